"""Runs of consecutive ROPs: the one helper every alert and congestion rule counts with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from cellpulse.rops import rop_number, run_ids

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def rows(cells: dict[str, str]) -> pl.DataFrame:
    """One row per character that is not a space: `x` flagged, `.` not; a space is a missing
    ROP. Sorted by (cell_id, ts), as every caller has it."""
    return pl.DataFrame(
        [
            {"cell_id": c, "ts": T0 + timedelta(minutes=15 * i), "on": ch == "x"}
            for c, pattern in cells.items()
            for i, ch in enumerate(pattern)
            if ch != " "
        ]
    )


def runs_of(df: pl.DataFrame, **kwargs) -> list[list[int]]:
    """Each run as the positions of its rows, in order."""
    ids = df.select(run_ids(**kwargs).alias("_run")).with_row_index("_i")
    grouped = ids.group_by("_run", maintain_order=True).agg("_i")
    return [list(g) for g in grouped["_i"].to_list()]


def test_rop_numbers_of_consecutive_rops_differ_by_one():
    ts = pl.DataFrame({"ts": [T0, T0 + timedelta(minutes=15), T0 + timedelta(hours=1)]})
    numbers = ts.select(rop_number(15)).to_series().to_list()
    assert [n - numbers[0] for n in numbers] == [0, 1, 4]
    assert numbers[0] == T0.timestamp() // 900


def test_a_missing_rop_ends_a_run_and_runs_reach_the_first_and_last_rows():
    df = rows({"a": "xxx xx"})
    assert runs_of(df, rop_minutes=15) == [[0, 1, 2], [3, 4]]


def test_a_new_cell_starts_a_run_even_at_the_next_rop():
    df = pl.DataFrame(
        {
            "cell_id": ["a", "a", "b", "b"],
            "ts": [T0 + timedelta(minutes=m) for m in (0, 15, 30, 45)],
        }
    )
    assert runs_of(df, rop_minutes=15) == [[0, 1], [2, 3]]


def test_a_change_of_value_starts_a_run():
    df = rows({"a": "xx..x", "b": "x"})
    assert runs_of(df, rop_minutes=15, value="on") == [[0, 1], [2, 3], [4], [5]]
    assert runs_of(df, rop_minutes=15, value=pl.col("on")) == [[0, 1], [2, 3], [4], [5]]


def test_max_step_bridges_short_gaps_only():
    # Two missing ROPs are a step of 3: bridged by max_step 3, not by 2.
    df = rows({"a": "x  x   x"})
    assert runs_of(df, rop_minutes=15, max_step=3) == [[0, 1], [2]]
    assert runs_of(df, rop_minutes=15, max_step=2) == [[0], [1], [2]]
    assert runs_of(df, rop_minutes=15, max_step=4) == [[0, 1, 2]]


def test_without_a_rop_length_adjacent_rows_are_a_run_whatever_the_gap():
    df = rows({"a": "xx  x.", "b": "x"})
    assert runs_of(df, rop_minutes=None, value="on") == [[0, 1, 2], [3], [4]]
    assert runs_of(df, rop_minutes=None) == [[0, 1, 2, 3], [4]]


def test_one_row_and_no_rows():
    assert runs_of(rows({"a": "x"}), rop_minutes=15) == [[0]]
    empty = rows({"a": "x"}).clear()
    assert empty.select(run_ids(15)).height == 0
