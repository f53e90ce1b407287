"""Backfill over a range of days: only what is missing or stale runs, a re-run skips
everything, and `--force` redoes it; the CLI reports days run and time per day."""

from __future__ import annotations

import shutil
from datetime import date, timedelta

from typer.testing import CliRunner

from cellpulse.cli import app
from cellpulse.flows.backfill import backfill_flow
from cellpulse.flows.pipeline import pipeline_flow
from cellpulse.ledger import Ledger
from cellpulse.simulator import build_topology, write_network
from cellpulse.window import DayWindow
from tests.conftest import TINY, outage_events, tiny_settings


def test_backfill_fills_gaps_resumes_and_reports(tmp_path, restore_environ):
    settings = tiny_settings(tmp_path / "home")
    events = outage_events(build_topology(TINY))
    write_network(
        TINY, settings.layout.landing, settings.layout.ground_truth, settings.congestion, events
    )
    pipeline_flow(settings)
    last = TINY.start + timedelta(days=TINY.days - 1)
    gap = [last - timedelta(days=2), last - timedelta(days=1)]
    for day in gap:  # lose two days of scores, and mark the last day's features stale
        shutil.rmtree(settings.layout.scores.day_dir(day))
    with Ledger(settings.layout.ledger) as ledger:
        ledger.mark_stale("features", [last])

    first = backfill_flow(settings, DayWindow(gap[0], last))
    assert first.ran == {gap[0]: ["score"], gap[1]: ["score"], last: ["features", "score"]}
    assert set(settings.layout.scores.dates()) >= {*gap, last}
    assert all(seconds > 0 for seconds in first.seconds.values())
    with Ledger(settings.layout.ledger) as ledger:
        assert ledger.stale("features") == [] and ledger.stale("scores") == []

    again = backfill_flow(settings, DayWindow(TINY.start, last))
    assert again.skipped == again.days and len(again.days) == TINY.days

    result = CliRunner().invoke(
        app,
        [
            "backfill",
            "--home",
            str(settings.home),
            "--from",
            str(last),
            "--to",
            str(last),
            "--stages",
            "features",
            "--force",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "1 days with KPIs, 1 run, 0 already current" in result.output
    assert "s per day (median)" in result.output
    assert settings.layout.features.dates()[-1] == last

    nothing = CliRunner().invoke(
        app,
        ["backfill", "--home", str(settings.home), "--from", "2030-01-01", "--to", "2030-01-02"],
    )
    assert nothing.exit_code == 2 and "no ingested KPIs between" in nothing.output
    assert date(2030, 1, 1) not in settings.layout.scores.dates()


def test_an_unchanged_day_reuses_its_cached_build_and_a_new_delivery_invalidates_it(tmp_path):
    from datetime import UTC, datetime

    import polars as pl

    from cellpulse import lake
    from cellpulse.flows.features import features_flow
    from cellpulse.ingest import ingest_files

    settings = tiny_settings(tmp_path / "home")
    write_network(TINY, settings.layout.landing, settings.layout.ground_truth, settings.congestion)
    ingest_files([settings.layout.landing], settings, datetime(2026, 2, 1, tzinfo=UTC))
    day = TINY.start + timedelta(days=TINY.days - 1)
    first = features_flow(settings, DayWindow(day, day))
    assert first is not None and first.reused == 0
    part = settings.layout.features.files(day, day)[0]
    stamp = part.stat().st_mtime_ns

    again = features_flow(settings, DayWindow(day, day))
    assert again is not None and again.reused == 1 and again.rows == first.rows
    assert part.stat().st_mtime_ns == stamp  # nothing was rewritten

    # A corrected delivery for that day changes its inputs: the day is built again.
    kpis = settings.layout.kpi.read(day, day).head(1)
    fix = kpis.with_columns(pl.lit(1.0).alias("prb_util_dl_pct"))
    lake.atomic_write_parquet(fix, settings.layout.landing / "late" / "fix.parquet")
    ingest_files([settings.layout.landing], settings, datetime(2026, 2, 1, tzinfo=UTC))
    rebuilt = features_flow(settings, DayWindow(day, day))
    assert rebuilt is not None and rebuilt.reused == 0

    # Output lost: the cache cannot bring it back, so the day is built again.
    for f in settings.layout.features.files(day, day):
        f.unlink()
    restored = features_flow(settings, DayWindow(day, day))
    assert restored is not None and restored.reused == 0
    assert settings.layout.features.files(day, day)
