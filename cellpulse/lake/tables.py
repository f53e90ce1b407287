"""Helpers over tables keyed by (cell_id, ts): reading lake files, key order, the latest
delivery of each key, rows by region."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path

import polars as pl

from cellpulse.lake.partitions import FRAGMENT_SUFFIX

KEYS = ("cell_id", "ts")


def scan(files: Sequence[Path]) -> pl.LazyFrame:
    """The rows of lake files (parquet parts and fragments, Arrow IPC fragments), in the
    order given: readers rely on it to apply deliveries oldest first."""
    if not files:
        raise ValueError("scan needs at least one file")
    scans = [
        pl.scan_ipc(list(run), hive_partitioning=False)
        if suffix == FRAGMENT_SUFFIX
        else pl.scan_parquet(list(run), hive_partitioning=False)
        for suffix, run in itertools.groupby(files, key=lambda f: f.suffix)
    ]
    return scans[0] if len(scans) == 1 else pl.concat(scans)


def in_key_order(df: pl.DataFrame) -> bool:
    """Whether rows are sorted by (cell_id, ts) with no key twice."""
    segments = key_ordered_segments(df)
    return segments is not None and len(segments) == 1


def by_keys(df: pl.DataFrame) -> pl.DataFrame:
    """`df` sorted by (cell_id, ts); as it is when it already is (sorting a national day's
    wide feature table costs seconds even when nothing moves)."""
    return df if in_key_order(df) else df.sort(*KEYS)


MAX_SEGMENTS = 64


def key_ordered_segments(df: pl.DataFrame) -> list[pl.DataFrame] | None:
    """`df` cut (zero-copy) where (cell_id, ts) order breaks, e.g. a day read region by
    region, each region's file sorted; None when a cell lies in two segments (its rows
    would then need a real sort to come together) or the order breaks more than
    MAX_SEGMENTS times (rows in no particular order: sorting is the cheaper way)."""
    if df.height < 2:
        return [df]
    cell, ts = df["cell_id"], df["ts"]
    head, tail = cell.slice(0, df.height - 1), cell.slice(1)
    in_order = (tail > head) | ((tail == head) & (ts.slice(1) > ts.slice(0, df.height - 1)))
    breaks = in_order.not_().arg_true()
    if breaks.len() >= MAX_SEGMENTS:
        return None
    cuts = [0, *(breaks + 1).to_list(), df.height]
    segments = [df.slice(lo, hi - lo) for lo, hi in itertools.pairwise(cuts)]
    if len(segments) > 1:
        cells = pl.concat([seg["cell_id"].unique() for seg in segments])
        if cells.n_unique() < cells.len():
            return None
    return segments


def latest_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per key, the last one in `rows`' order (the latest delivery), sorted by key."""
    # A stable sort keeps deliveries in order within a key, so the last row of each key run
    # is the latest delivery; comparing neighbours is far cheaper than hashing every key.
    # Only the keys are sorted and the rows gathered once: sorting the whole table held
    # about three copies of it at once (peak memory in bench/RESULTS.md).
    order = rows.select(*KEYS).with_row_index("_row").sort(*KEYS, maintain_order=True)
    next_differs = (pl.col("cell_id") != pl.col("cell_id").shift(-1)) | (
        pl.col("ts") != pl.col("ts").shift(-1)
    )
    return rows[order.filter(next_differs.fill_null(True))["_row"]]


def split_regions(df: pl.DataFrame) -> Iterator[tuple[str, pl.DataFrame]]:
    """(region, its rows, in their order) in region order."""
    if df.is_empty():
        return
    column = df["region"]
    regions = sorted(column.unique().drop_nulls().to_list())
    if column.has_nulls() or len(regions) > 4:
        parts = df.partition_by("region", as_dict=True, maintain_order=True)
        for (region,), rows in sorted(parts.items(), key=lambda item: str(item[0][0])):
            yield str(region), rows
    elif len(regions) == 1:
        yield regions[0], df
    else:
        # Rows usually span a few regions: a filter per region copies less than a grouped
        # split of the whole table.
        for region in regions:
            yield region, df.filter(pl.col("region") == region)
