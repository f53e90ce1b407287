"""Disk housekeeping: which days are compacted and removed, that compaction keeps every row,
that removal takes exactly the planned days and is idempotent, and that a dry run changes
nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cellpulse import failpoints, housekeeping, lake
from cellpulse.cli import app
from cellpulse.housekeeping import DayState, plan
from cellpulse.layout import Layout
from cellpulse.settings import HousekeepingSettings, RetentionDays

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
TODAY = NOW.date()


def days_back(*ns: int) -> list[date]:
    return [TODAY - timedelta(days=n) for n in ns]


def settings(
    kpi: int | None = 400, features: int | None = 35, idle: int = 60
) -> HousekeepingSettings:
    return HousekeepingSettings(
        retention_days=RetentionDays(kpi=kpi, features=features, scores=kpi, expected=features),
        compact_idle_minutes=idle,
    )


# --- planning -----------------------------------------------------------------------------


def test_retention_keeps_the_newest_days_counted_back_from_the_newest_kpi_day():
    held = {
        "kpi": [DayState(d) for d in days_back(40, 36, 35, 34, 1, 0)],
        "features": [DayState(d) for d in days_back(40, 36, 35, 34, 1, 0)],
    }
    todo = plan(held, NOW, settings(kpi=36, features=35))
    assert todo.newest == TODAY
    # 35 days kept: today and the 34 before it.
    assert todo.remove["features"] == days_back(40, 36, 35)
    assert todo.remove["kpi"] == days_back(40, 36)
    assert todo.compact == {"kpi": [], "features": []}


def test_retention_counts_from_the_newest_data_when_the_lake_stopped_receiving_any():
    # A demo loaded long ago: its days are kept, not emptied by the clock.
    old = [date(2025, 1, 1) + timedelta(days=i) for i in range(10)]
    held = {"kpi": [DayState(d) for d in old], "features": [DayState(d) for d in old]}
    todo = plan(held, NOW, settings(kpi=400, features=3))
    assert todo.newest == old[-1]
    assert todo.remove["kpi"] == []
    assert todo.remove["features"] == old[:7]


def test_retention_never_counts_from_a_day_in_the_future():
    held = {"kpi": [DayState(d) for d in [*days_back(3, 2, 0), TODAY + timedelta(days=5)]]}
    assert plan(held, NOW, settings(kpi=3)).remove["kpi"] == days_back(3)


def test_null_retention_keeps_every_day():
    held = {"scores": [DayState(d) for d in days_back(900, 500, 0)], "kpi": [DayState(TODAY)]}
    todo = plan(held, NOW, settings(kpi=None))
    assert todo.remove == {"scores": [], "kpi": []}


def test_days_before_yesterday_with_deliveries_are_compacted_and_recent_busy_ones_are_not():
    fresh = NOW - timedelta(minutes=5)
    stale = NOW - timedelta(minutes=61)
    held = {
        "kpi": [
            DayState(days_back(5)[0]),  # compacted already: nothing to do
            DayState(days_back(3)[0], deliveries=True, last_delivery=fresh),  # old day
            DayState(days_back(2)[0], deliveries=True, last_delivery=fresh),
            DayState(days_back(1)[0], deliveries=True, last_delivery=fresh),  # late files come
            DayState(TODAY, deliveries=True, last_delivery=fresh),  # still receiving
        ]
    }
    assert plan(held, NOW, settings()).compact["kpi"] == days_back(3, 2)
    held["kpi"][-1] = DayState(TODAY, deliveries=True, last_delivery=stale)  # gone quiet
    assert plan(held, NOW, settings()).compact["kpi"] == [*days_back(3, 2), TODAY]
    # With no idle time every day holding deliveries is compacted.
    assert plan(held, NOW, settings(idle=0)).compact["kpi"] == [*days_back(3, 2, 1), TODAY]


def test_a_day_about_to_be_removed_is_not_compacted_first():
    held = {"kpi": [DayState(d, deliveries=True) for d in days_back(10, 2)]}
    todo = plan(held, NOW, settings(kpi=5))
    assert todo.remove["kpi"] == days_back(10)
    assert todo.compact["kpi"] == days_back(2)


def test_an_empty_lake_plans_nothing():
    todo = plan({name: [] for name in housekeeping.DATASETS}, NOW, settings())
    assert todo.empty and todo.newest is None


# --- carrying it out ----------------------------------------------------------------------


def kpi_rows(day: date, cells: list[str], value: float, region: str) -> pl.DataFrame:
    t0 = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return pl.DataFrame(
        {
            "cell_id": [c for c in cells for _ in range(4)],
            "ts": [t0 + timedelta(minutes=15 * i) for _ in cells for i in range(4)],
            "region": region,
            "v": [value + i for i in range(4 * len(cells))],
        }
    ).with_columns(pl.col("v").cast(pl.Float64))


def a_lake(home: Path, days: list[date]) -> Layout:
    """Each day: two deliveries (the second correcting a cell), in two regions; features,
    scores and expected bands as compacted parts."""
    layout = Layout(home)
    for i, day in enumerate(days):
        layout.kpi.append(
            pl.concat([kpi_rows(day, ["a", "b"], i, "north"), kpi_rows(day, ["c"], i, "south")]),
            day,
        )
        layout.kpi.append(kpi_rows(day, ["b"], 100 + i, "north"), day)
        for ds in (layout.features, layout.scores, layout.expected):
            ds.replace_day(kpi_rows(day, ["a", "b", "c"], i, "north"), day)
    return layout


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def test_compacting_idle_days_keeps_every_row_and_leaves_no_delivery(tmp_path):
    days = days_back(4, 3, 2)
    layout = a_lake(tmp_path, days)
    before = {d: layout.kpi.read_days([d]) for d in days}
    todo = plan(housekeeping.survey(layout), NOW, settings())
    assert todo.compact["kpi"] == days
    outcome = housekeeping.carry_out(layout, todo)
    assert outcome.compacted["kpi"] == days
    for d in days:
        assert layout.kpi.deltas(d) == []
        assert layout.kpi.read_days([d]).equals(before[d])
    assert outcome.after["kpi"] == layout.kpi.size()
    # Nothing left to do: a second run plans nothing.
    assert plan(housekeeping.survey(layout), NOW, settings()).empty


def test_removal_takes_exactly_the_planned_days_and_is_idempotent(tmp_path):
    days = days_back(9, 8, 7, 1, 0)
    layout = a_lake(tmp_path / "home", days)
    landing = tmp_path / "home" / "landing"
    landing.mkdir()
    (landing / "A20260101.0000+0000-0100+0000_x.csv").write_text("cell_id,ts\n")
    landing_before = snapshot(landing)
    hs = settings(kpi=9, features=8, idle=0)
    todo = plan(housekeeping.survey(layout), NOW, hs)
    assert todo.remove["kpi"] == days_back(9)
    assert todo.remove["features"] == days_back(9, 8)
    kept = {name: [d for d in days if d not in todo.remove[name]] for name in todo.remove}
    rows_kept = {
        name: housekeeping.dataset(layout, name).read_days(kept[name])
        for name in housekeeping.DATASETS
    }
    housekeeping.carry_out(layout, todo)
    for name in housekeeping.DATASETS:
        ds = housekeeping.dataset(layout, name)
        assert ds.dates() == kept[name]
        assert ds.read().equals(rows_kept[name])
        assert not list(ds.root.glob(".*"))  # no hidden leftovers
    assert snapshot(landing) == landing_before  # raw files are never touched
    after = snapshot(layout.lake)
    again = housekeeping.carry_out(layout, todo)  # the same plan, run twice
    assert again.removed == {name: [] for name in housekeeping.DATASETS}
    assert {k for k in snapshot(layout.lake)} == set(after)
    assert plan(housekeeping.survey(layout), NOW, hs).empty


def test_a_dry_run_changes_nothing(tmp_path):
    layout = a_lake(tmp_path, days_back(9, 3, 0))
    before = snapshot(layout.lake)
    outcome = housekeeping.housekeep(layout, settings(kpi=5, features=5), NOW, dry_run=True)
    assert outcome.removed["kpi"] == days_back(9)
    assert outcome.compacted["kpi"] == days_back(3)
    assert outcome.after == outcome.before
    assert snapshot(layout.lake) == before


def test_the_command_prints_what_it_would_do_and_a_dry_run_changes_nothing(tmp_path):
    home = tmp_path / "home"
    layout = a_lake(home, [date(2026, 1, d) for d in (5, 6, 7)])
    before = snapshot(layout.lake)
    env = {"CELLPULSE_HOUSEKEEPING__RETENTION_DAYS__FEATURES": "2"}
    result = CliRunner().invoke(app, ["housekeeping", "--dry-run", "--home", str(home)], env=env)
    assert result.exit_code == 0, result.output
    assert "Dry run: nothing changed" in result.output
    assert "features: would compact no day, would remove 1 day (2026-01-05)" in result.output
    assert "kpi: would compact 3 days (2026-01-05..2026-01-07)" in result.output
    assert snapshot(layout.lake) == before
    result = CliRunner().invoke(app, ["housekeeping", "--home", str(home)], env=env)
    assert result.exit_code == 0, result.output
    assert "features: compacted no day, removed 1 day (2026-01-05)" in result.output
    assert layout.features.dates() == [date(2026, 1, 6), date(2026, 1, 7)]
    assert all(layout.kpi.deltas(d) == [] for d in layout.kpi.dates())


def test_a_delivery_published_while_a_day_is_compacted_is_kept(tmp_path, monkeypatch):
    layout = a_lake(tmp_path, days_back(3))
    day = days_back(3)[0]
    late = kpi_rows(day, ["a", "d"], 500.0, "north")
    real_hit = failpoints.hit

    def deliver_meanwhile(name: str) -> None:
        if name == "lake.parts_replaced":  # parts written, deliveries not yet removed
            layout.kpi.append(late, day)
        real_hit(name)

    expected = pl.concat([layout.kpi.read_days([day]), late])
    expected = lake.latest_rows(expected)
    monkeypatch.setattr(failpoints, "hit", deliver_meanwhile)
    layout.kpi.compact(day)
    got = layout.kpi.read_days([day])
    assert got.sort("cell_id", "ts").equals(expected.sort("cell_id", "ts"))
    assert [f.parent.name for f in layout.kpi.deltas(day)] == ["delta-000003"]


DROP_SCRIPT = """
import sys
from datetime import date
from cellpulse.lake import Dataset
Dataset(__import__("pathlib").Path(sys.argv[1])).drop_day(date(2026, 1, 5))
"""


def test_a_removal_killed_midway_reads_as_done_and_the_next_run_clears_it(tmp_path):
    layout = a_lake(tmp_path, [date(2026, 1, 5), date(2026, 1, 6)])
    kept = layout.features.read_days([date(2026, 1, 6)])
    env = {**os.environ, failpoints.ENV: "lake.day_dropped"}
    proc = subprocess.run(
        [sys.executable, "-c", DROP_SCRIPT, str(layout.features.root)], env=env, check=False
    )
    assert proc.returncode == -9
    assert layout.features.dates() == [date(2026, 1, 6)]  # renamed away: no reader sees it
    assert list(layout.features.root.glob(lake.DROPPED_PREFIX + "*"))
    assert layout.features.read().equals(kept)
    housekeeping.carry_out(layout, plan(housekeeping.survey(layout), NOW, settings(kpi=None)))
    assert not list(layout.features.root.glob(lake.DROPPED_PREFIX + "*"))


@pytest.mark.parametrize("name", housekeeping.DATASETS)
def test_every_dataset_has_a_retention_setting(name):
    assert hasattr(RetentionDays(), name)
