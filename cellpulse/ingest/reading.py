"""Reading one landing file as contract-shaped rows: the file read (directly, or through a
source mapping), then conformed to the contract's columns and types."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from cellpulse import contract, echo
from cellpulse.errors import UNREADABLE, ContractError
from cellpulse.ingest.results import Problem
from cellpulse.ingest.validation import UNALIGNED_TS, UNPARSABLE
from cellpulse.mapping import TS_UNREAD, Mapped, Mapping, map_source, read_source

if TYPE_CHECKING:
    pass

SUPPORTED_SUFFIXES = (".parquet",)
UNASSIGNED_REGION = "unassigned"


def read_landing_file(path: Path) -> pl.DataFrame:
    """Read one contract-shaped file, or raise ContractError saying why it cannot be read."""
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise ContractError(
            f"{path}: unsupported file type '{path.suffix}'; contract-shaped input is parquet "
            "(convert the export, or move the file out of the landing folder)"
        )
    if path.stat().st_size == 0:
        raise ContractError(f"{path}: the file is empty; ask the OSS export to re-deliver it")
    try:
        # glob=False: a landing file's name is a name; "x[1].parquet" or "*.parquet" is not
        # a pattern matching other files
        return pl.read_parquet(path, hive_partitioning=False, glob=False)
    except UNREADABLE as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ContractError(
            f"{path}: not a readable parquet file ({first[:160]}); it may be truncated or "
            "still being written: re-deliver it"
        ) from exc


def read_mapped(path: Path, mapping: Mapping | None, rop_minutes: int) -> Mapped:
    """One landing file as contract-named columns: directly if it is contract-shaped
    parquet, through the source mapping otherwise (`rop_minutes` places a mapped export's
    period-end times); with what the mapping noticed and the measurements the file carried."""
    if mapping is None:
        raw = read_landing_file(path)
        carried = tuple(m for m in contract.MEASUREMENT_NAMES if m in raw.columns)
        return Mapped(raw, [], carried)
    if path.stat().st_size == 0:
        raise ContractError(f"{path}: the file is empty; ask the OSS export to re-deliver it")
    return map_source(read_source(path, mapping), mapping, rop_minutes, str(path))


def conform(raw: pl.DataFrame, source: str) -> tuple[pl.DataFrame, list[Problem]]:
    """Shape a file's table like the contract: key columns present and typed, measurements as
    floats, absent optional columns as nulls, unknown columns dropped.

    Values that are not numbers become null here; a boolean `_unparsable_<column>` marks
    them (only for columns that were not numeric to begin with) so that `validate_rows` reports
    them and no bad value silently disappears.
    """
    missing = [k for k in contract.KEYS if k not in raw.columns]
    if missing:
        raise ContractError(
            f"{source}: missing key column(s) {', '.join(missing)}; a contract-shaped file needs "
            "cell_id and ts (a foreign export needs a source mapping)"
        )
    source_schema = raw.schema  # built anew on every access: once per file is enough
    ts_type = source_schema["ts"]
    if not isinstance(ts_type, pl.Datetime):
        raise ContractError(
            f"{source}: column ts has type {ts_type}, expected a timestamp; write ts as a "
            "timezone-aware UTC timestamp (or map the export's time column)"
        )
    if ts_type.time_zone is None:
        raise ContractError(
            f"{source}: column ts has no timezone; the contract needs UTC-aware timestamps "
            "(period start), so a naive local time cannot be placed safely"
        )
    known = contract.schema()
    nested = [name for name, dtype in source_schema.items() if name in known and not _scalar(dtype)]
    if nested:
        raise ContractError(
            f"{source}: column(s) {echo.name_list(nested)} hold lists, records, objects or "
            "raw bytes, not single values; write one number (or text) per row and column"
        )
    problems: list[Problem] = []
    marks = [c for c in raw.columns if c.startswith(TS_UNREAD)]
    unknown = [c for c in raw.columns if c not in known and c not in marks]
    if unknown:
        problems.append(Problem(echo.name_list(unknown, 5), "unknown column, ignored", 0, ""))
    conformed = raw.select(_conforming(tuple(source_schema.items())))
    return (conformed.with_columns(raw.select(marks)) if marks else conformed), problems


def _scalar(dtype: pl.DataType) -> bool:
    return not (dtype.is_nested() or isinstance(dtype, pl.Object | pl.Binary))


@lru_cache(maxsize=32)
def _conforming(source_schema: tuple[tuple[str, pl.DataType], ...]) -> tuple[pl.Expr, ...]:
    """`conform`'s expressions for files of one schema: an ingest run usually reads many
    files of the same export, and building the expressions costs about as much as running
    them on a small file."""
    present = dict(source_schema)
    exprs: list[pl.Expr] = [
        pl.col("cell_id").cast(pl.String),
        pl.col("ts").dt.convert_time_zone("UTC").dt.cast_time_unit("us"),
    ]
    unparsable: list[pl.Expr] = []
    ts_type = present["ts"]
    if isinstance(ts_type, pl.Datetime) and ts_type.time_unit == "ns":
        # The lake holds microseconds: a ts with a sub-microsecond part would be cut to a
        # different instant (perhaps onto the ROP), so such rows are kept apart with the
        # value as delivered.
        ts_utc = pl.col("ts").dt.convert_time_zone("UTC")
        unparsable.append(
            pl.when(ts_utc.dt.epoch("ns") % 1000 != 0)
            .then(ts_utc.dt.to_string("%Y-%m-%dT%H:%M:%S%.9f%:z"))
            .alias(UNALIGNED_TS)
        )
    for dim in contract.DIMENSIONS:
        value = pl.col(dim).cast(pl.String) if dim in present else pl.lit(None, pl.String)
        if dim == "region":
            value = (
                pl.when(value.is_null() | (value == ""))
                .then(pl.lit(UNASSIGNED_REGION))
                .otherwise(value)
            )
        exprs.append(value.alias(dim))
    for name in contract.MEASUREMENT_NAMES:
        if name not in present:
            exprs.append(pl.lit(None, pl.Float64).alias(name))
            continue
        as_float = pl.col(name).cast(pl.Float64, strict=False)
        exprs.append(as_float)
        if not present[name].is_numeric():
            unparsable.append(
                (pl.col(name).is_not_null() & as_float.is_null()).alias(f"{UNPARSABLE}{name}")
            )
    return (*exprs, *unparsable, pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"))
