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
