"""Reading the period start of each row: text in the mapping's format (or inferred) or a
timestamp column, in the mapping's zone, marking the period's start or end, as UTC."""

from __future__ import annotations

import polars as pl

from cellpulse.echo import shown
from cellpulse.errors import UNREADABLE, MappingError
from cellpulse.mapping.model import TimestampSpec

# The mark beside rows whose time text did not parse: the text itself, under a name that
# ends with what was expected (validation reports both; see ingest.validation).
TS_UNREAD = "_ts_unread "


def period_start(
    df: pl.DataFrame, spec: TimestampSpec, columns: list[str], rop_minutes: int
) -> tuple[pl.Expr, pl.Series | None]:
    """The period start in UTC, and for text that did not parse a mark.

    Rows whose time text does not parse get a null ts and keep the text in a mark column
    (named `TS_UNREAD` + what was expected), so that validation reports each such row once,
    with the text as delivered and the format expected."""
    dtypes = {df.schema[c] for c in columns}
    if len(columns) > 1 and dtypes != {pl.String()}:
        raise MappingError(
            f"timestamp columns {', '.join(columns)} must all be text to be joined; they are "
            f"{', '.join(str(t) for t in dtypes)}"
        )
    dtype = df.schema[columns[0]]
    if isinstance(dtype, pl.Datetime):
        ts = pl.col(columns[0])  # in its own unit: conform judges a sub-microsecond part
        if dtype.time_zone is None:
            ts = ts.dt.replace_time_zone(spec.timezone, ambiguous="earliest", non_existent="null")
        return _to_start(ts, spec.marks, rop_minutes), None
    if dtype != pl.String:
        raise MappingError(
            f"timestamp column {columns[0]} has type {dtype}; expected text or a timestamp"
        )
    text = df.select(
        pl.concat_str([pl.col(c) for c in columns], separator=" ").alias("t")
    ).to_series()
    parsed = _parse_times(text, spec.format)
    unread = text.is_not_null() & parsed.is_null()
    if isinstance(parsed.dtype, pl.Datetime) and parsed.dtype.time_zone is None:
        # A local time skipped by a daylight-saving change parses but does not exist: it
        # becomes a missing ts, not a text in the wrong format.
        parsed = parsed.dt.replace_time_zone(
            spec.timezone, ambiguous="earliest", non_existent="null"
        )
    ts = _to_start(pl.lit(parsed), spec.marks, rop_minutes)
    if not unread.any():
        return ts, None
    expected = f"format {spec.format}" if spec.format else "format inferred from the first value"
    mark = pl.select(pl.when(unread).then(text)).to_series().alias(TS_UNREAD + expected)
    return ts, mark


def _parse_times(text: pl.Series, fmt: str | None) -> pl.Series:
    try:
        return text.str.strip_chars().str.to_datetime(fmt, strict=False, time_unit="us")
    except UNREADABLE as exc:  # no format given, and none could be inferred
        first = text.drop_nulls().head(1).to_list()
        raise MappingError(
            f"no time format could be inferred from {shown(first[0] if first else '', 60)!r}; "
            "set timestamp.format in the mapping (e.g. '%d/%m/%Y %H:%M')"
        ) from exc


def _to_start(ts: pl.Expr, marks: str, rop_minutes: int) -> pl.Expr:
    ts = ts.dt.convert_time_zone("UTC")
    if marks == "end":  # contract rows are keyed by the period's start
        ts = ts - pl.duration(minutes=rop_minutes)
    return ts.alias("ts")
