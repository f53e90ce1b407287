from datetime import UTC, datetime, timedelta

import polars as pl

from cellpulse.features.targets import (
    congestion_flags,
    congestion_periods,
    congestion_target,
    event_labels,
)
from cellpulse.settings import CongestionRule

T0 = datetime(2026, 1, 5, tzinfo=UTC)
RULE = CongestionRule()


def series(pattern: str) -> pl.DataFrame:
    """'.' normal ROP, 'C' a ROP meeting the congestion condition, '_' a missing ROP."""
    rows = []
    for i, ch in enumerate(pattern):
        if ch == "_":
            continue
        hot = ch == "C"
        rows.append(
            {
                "cell_id": "a",
                "ts": T0 + timedelta(minutes=15 * i),
                "prb_util_dl_pct": 95.0 if hot else 40.0,
                "dl_ue_thp_mbps": 3.0 if hot else 50.0,
                "active_ue_dl_mean": 8.0,
            }
        )
    return pl.DataFrame(rows)


def test_congestion_needs_three_consecutive_rops():
    flags = congestion_flags(series("..CC..CCC."), RULE, 15)
    assert flags["congested"].to_list() == [False] * 6 + [True] * 3 + [False]
    assert flags["congested_now"].to_list() == [False] * 8 + [True, False]


def test_a_missing_rop_breaks_a_run():
    flags = congestion_flags(series("CC_CC"), RULE, 15)
    assert not flags["congested"].any()


def test_too_few_users_is_not_congestion():
    df = series("CCCC").with_columns(pl.lit(2.0).alias("active_ue_dl_mean"))
    assert not congestion_flags(df, RULE, 15)["congested"].any()


def test_target_looks_ahead_over_the_horizon_and_is_unknown_at_the_end():
    flags = congestion_flags(series("........CCC........."), RULE, 15)
    target = congestion_target(flags, 60, 15)["congested_within"].to_list()
    # ROP i is positive when one of i+1..i+4 is congested (ROPs 8-10).
    assert target[3] is False and target[4] is True and target[9] is True
    assert target[10] is False
    assert target[-4:] == [None] * 4  # the future is not in the data yet


def test_periods_are_runs_with_exclusive_end():
    flags = congestion_flags(series("..CCC...CCCC"), RULE, 15)
    periods = congestion_periods(flags, 15)
    assert periods["rops"].to_list() == [3, 4]
    assert periods["start"][0] == T0 + timedelta(minutes=30)
    assert periods["end"][0] == T0 + timedelta(minutes=75)


def test_event_labels_mark_rows_inside_events():
    keys = pl.DataFrame({"cell_id": ["a", "a", "b"], "ts": [T0, T0 + timedelta(hours=1), T0]})
    events = pl.DataFrame(
        {"cell_id": ["a"], "start": [T0 + timedelta(minutes=30)], "end": [T0 + timedelta(hours=2)]}
    )
    assert event_labels(keys, events).to_list() == [False, True, False]


def day_of_traffic(cell: str, day: int, busy_hour: int, hot: bool, tz_shift: int = 0) -> list[dict]:
    """A day of 15-minute ROPs whose traffic peaks at `busy_hour` (local clock, UTC+tz_shift);
    congested for that whole hour when `hot`, and also (a decoy) at 03:00 every day."""
    rows = []
    for i in range(96):
        ts = T0 + timedelta(days=day, minutes=15 * i) - timedelta(hours=tz_shift)
        hour = i // 4
        congested = (hour == busy_hour and hot) or hour == 3
        rows.append(
            {
                "cell_id": cell,
                "ts": ts,
                "dl_volume_mbit": 900.0 if hour == busy_hour else 100.0,
                "prb_util_dl_pct": 95.0 if congested else 40.0,
                "dl_ue_thp_mbps": 3.0 if congested else 50.0,
                "active_ue_dl_mean": 8.0,
            }
        )
    return rows


def test_next_day_busy_hour_target_looks_at_tomorrows_busiest_hour_only():
    from cellpulse.features.targets import congestion_labels

    rule = CongestionRule(horizon="next_day_busy_hour")
    # Cell a: busy at 18:00, congested then on day 1 only. Cell b: busy at 09:00, never
    # congested then. Both are congested at 03:00 every day, outside their busy hour.
    rows = []
    for day in range(4):
        rows += day_of_traffic("a", day, 18, hot=day == 1) + day_of_traffic("b", day, 9, hot=False)
    kpis = pl.DataFrame(rows)
    labels = congestion_labels(kpis, kpis, rule, 15).sort("cell_id", "ts")
    by_day = (
        labels.with_columns(pl.col("ts").dt.date().alias("day"))
        .group_by("cell_id", "day", maintain_order=True)
        .agg(pl.col("congested_within").unique(), pl.col("persistence").unique())
    )
    a = by_day.filter(pl.col("cell_id") == "a")
    # Every ROP of day 0 forecasts day 1's busy hour (congested); of day 1, day 2's (not).
    assert a["congested_within"].to_list() == [[True], [False], [False], [None]]
    # Persistence: yesterday's busy hour (unknown on day 0, congested for day 2's rows).
    assert a["persistence"].to_list() == [[None], [False], [True], [False]]
    b = by_day.filter(pl.col("cell_id") == "b")
    assert b["congested_within"].to_list() == [[False], [False], [False], [None]]


def test_busy_hour_days_are_local_days():
    from cellpulse.features.targets import busy_hour_target

    # Local time UTC+5: the busy hour at 02:00 local is 21:00 UTC of the previous UTC day.
    rows = []
    for day in range(3):
        rows += day_of_traffic("a", day, 2, hot=day == 1, tz_shift=5)
    kpis = pl.DataFrame(rows)
    flags = congestion_flags(kpis, CongestionRule(), 15)
    target = busy_hour_target(flags, kpis, 15, "Asia/Karachi")
    local_day = pl.col("ts").dt.convert_time_zone("Asia/Karachi").dt.date()
    per_day = (
        target.group_by(local_day.alias("day"), maintain_order=True)
        .agg(pl.col("congested_within").unique())
        .sort("day")
    )
    assert per_day["congested_within"].to_list() == [[True], [False], [None]]
