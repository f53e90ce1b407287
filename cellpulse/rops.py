"""ROP numbers and runs of consecutive ROPs: the one definition behind alert flags, alert
grouping, congestion runs and periods, and the rows a fault classifier explains at once."""

from __future__ import annotations

import polars as pl


def rop_number(rop_minutes: int, ts: str = "ts") -> pl.Expr:
    """The ROP's number since the epoch: consecutive ROPs differ by exactly one."""
    return pl.col(ts).dt.epoch("s") // (rop_minutes * 60)


def run_ids(
    rop_minutes: int | None,
    *,
    value: pl.Expr | str | None = None,
    max_step: int = 1,
    cell: str = "cell_id",
    ts: str = "ts",
) -> pl.Expr:
    """A number per row, shared by the rows of one run and increasing from run to run, for
    rows sorted by (`cell`, `ts`). A run ends where the cell changes, where `value` changes,
    and where the next row lies more than `max_step` ROPs later.

    Args:
        rop_minutes: the ROP length; None: time is not looked at, adjacent rows of a cell
            (with the same `value`) are one run.
        value: a column or expression whose every change starts a run (e.g. "above the
            threshold"); None: only the cell and time end runs.
        max_step: 1 (default) ends a run at any missing ROP; n bridges up to n - 1 missing
            ROPs (an alert stays open until `clear_after_rops` normal ROPs pass).
    """
    starts = pl.col(cell) != pl.col(cell).shift(1)
    if value is not None:
        v = pl.col(value) if isinstance(value, str) else value
        starts = starts | (v != v.shift(1))
    if rop_minutes is not None:
        rop = rop_number(rop_minutes, ts)
        starts = starts | (rop - rop.shift(1) > max_step)
    return starts.fill_null(True).cum_sum()
