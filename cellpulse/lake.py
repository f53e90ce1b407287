"""The lake: hive-partitioned parquet datasets (date=, region=) with atomic writes.

A write goes to a hidden temporary file beside its target, is fsynced, then renamed over it:
a crash leaves either the old partition or the new one, never half of one.

Every dataset is keyed by (cell_id, ts). A partition is one compacted `part.parquet` (unique
keys, sorted) plus, for datasets fed by deliveries (lake/kpi), append-only deltas: folders
`delta-<seq>/` of fragment files (Arrow IPC, or parquet copied from a landing file), in
delivery order. A reader applies the deltas over the compacted part, the last delivery of a key
winning; `Dataset.compact` folds them in. Appending a delivery therefore costs in proportion
to the delivery, not to the day it lands in, and its fragments can be written while the rest
of the delivery is still being read: a delta is prepared in a hidden folder and published by
renaming the folder, all or nothing. `scan` reads lake files of either format.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date
from functools import partial
from pathlib import Path

import polars as pl
from polars.io.plugins import register_io_source

from cellpulse import failpoints
from cellpulse.echo import shown
from cellpulse.errors import ContractError

PART_FILE = "part.parquet"
DELTA_PREFIX = "delta-"
KEYS = ("cell_id", "ts")
NAME_MAX = 255  # bytes in one folder name on the file systems a lake lives on
# Delta fragments are Arrow IPC as written (encoding costs next to nothing, and compaction
# rewrites them soon), or parquet where a landing file was adopted byte for byte.
FRAGMENT_SUFFIX = ".arrow"
FRAGMENT_SUFFIXES = (FRAGMENT_SUFFIX, ".parquet")


def _temp_beside(path: Path) -> Path:
    """A fresh hidden temporary name beside `path`, after removing any left behind by a
    writer that was killed before its rename (one writer per path at a time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for orphan in path.parent.glob(f".{path.name}.*.tmp"):
        orphan.unlink(missing_ok=True)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers see the old content or the new, nothing between."""
    tmp = _temp_beside(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def atomic_write_parquet(
    df: pl.DataFrame | Iterable[pl.DataFrame],
    path: Path,
    metadata: Mapping[str, str] | None = None,
    fast: bool = False,
) -> None:
    """Write a parquet file atomically, with optional key/value metadata in its footer.

    `df` may be an iterable of frames of one schema, written as they come (row groups in
    order) so that a file larger than memory can be produced chunk by chunk.

    zstd level 1 by default: most of zstd's size saving at a fraction of its default write
    time. `fast` uses lz4 for files soon rewritten (deliveries awaiting compaction): about
    20% larger, written in two thirds of the time.
    """
    tmp = _temp_beside(path)
    try:
        if isinstance(df, pl.DataFrame):
            df.write_parquet(
                tmp,
                compression="lz4" if fast else "zstd",
                compression_level=None if fast else 1,
                metadata=dict(metadata) if metadata else None,
            )
        else:
            _write_chunks(df, tmp, metadata, "lz4" if fast else "zstd")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        failpoints.hit("lake.before_rename")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _write_chunks(
    chunks: Iterable[pl.DataFrame], path: Path, metadata: Mapping[str, str] | None, codec: str
) -> None:
    """Stream frames into one parquet file with polars' own (parallel) writer."""
    remaining = iter(chunks)
    first = next(remaining, None)
    if first is None:
        raise ValueError(f"no rows to write to {path}")
    failure: list[BaseException] = []

    def source(
        with_columns: list[str] | None, predicate: object, n_rows: int | None, batch: int | None
    ) -> Iterator[pl.DataFrame]:
        try:
            for chunk in itertools.chain([first], remaining):
                yield chunk if with_columns is None else chunk.select(with_columns)
        except BaseException as exc:  # re-raised as itself below, not as a polars error
            failure.append(exc)
            raise

    stream = register_io_source(source, schema=first.schema)
    try:
        stream.sink_parquet(
            path,
            compression="zstd" if codec == "zstd" else "lz4",
            compression_level=1 if codec == "zstd" else None,
            metadata=dict(metadata) if metadata else None,
        )
    except Exception:
        if failure:
            raise failure[0] from None
        raise


def file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def read_metadata(path: Path) -> dict[str, str]:
    raw = pl.read_parquet_metadata(path)
    return {k: v for k, v in raw.items() if not k.startswith("ARROW")}


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
    # about three copies of it at once (a national day's region: 5.5 GB instead of 3.9 GB).
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


def _region_dir_of(path: Path) -> Path:
    """The `region=...` folder of a part (`region=x/part.parquet`) or delta fragment
    (`region=x/delta-000001/f-00000.arrow`)."""
    return path.parent if path.parent.name.startswith("region=") else path.parent.parent


def _region_of(path: Path) -> str:
    return _region_dir_of(path).name.removeprefix("region=")


def _is_delta(path: Path) -> bool:
    return path.parent.name.startswith(DELTA_PREFIX)


def _runs_by_day(files: list[Path]) -> list[tuple[list[Path], bool]]:
    """`files` cut by day, in their order, each run with whether it holds deltas: a day
    with deltas is a run of its own, and consecutive days without share one (one scan)."""
    days: dict[Path, list[Path]] = {}
    for f in files:
        days.setdefault(_region_dir_of(f).parent, []).append(f)
    runs: list[tuple[list[Path], bool]] = []
    for day_files in days.values():
        deltas = any(_is_delta(f) for f in day_files)
        if runs and not deltas and not runs[-1][1]:
            runs[-1][0].extend(day_files)
        else:
            runs.append((list(day_files), deltas))
    return runs


def delta_seq(fragment: Path) -> int:
    """The delivery sequence number of a delta fragment (`.../delta-000007/f-00000.arrow`)."""
    return int(fragment.parent.name.removeprefix(DELTA_PREFIX))


def _fragments(paths: Iterable[Path]) -> Iterator[Path]:
    return (p for p in paths if p.suffix in FRAGMENT_SUFFIXES)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


class Dataset:
    """One partitioned dataset of the lake, e.g. `lake/kpi`.

    `fast`: partitions are written with lz4 rather than zstd, for derived data that is read
    far more often than it is kept (about 15% larger, read in two thirds of the time)."""

    def __init__(self, root: Path, fast: bool = False) -> None:
        self.root = root
        self.fast = fast

    def day_dir(self, day: date) -> Path:
        return self.root / f"date={day.isoformat()}"

    def region_dir(self, day: date, region: str) -> Path:
        """The folder of a (day, region) partition, the one place a partition value becomes
        part of a path. Ingest quarantines rows whose region breaks the contract's rule; this
        is the last line: a value that is not one plain folder name, or a folder that
        resolves outside the dataset, is refused before anything is written."""
        name = f"region={region}"
        folder = self.day_dir(day) / name
        if "/" in region or "\0" in region or len(name.encode(errors="replace")) > NAME_MAX:
            raise ContractError(
                f"{self.root}: region {shown(region, 80)!r} cannot be a partition folder; a "
                "partition value is one folder name (no '/', no NUL, at most "
                f"{NAME_MAX} bytes): quarantine or map such rows before they reach the lake"
            )
        root = self.root.resolve()
        if not folder.resolve().is_relative_to(root):
            raise ContractError(
                f"{self.root}: partition folder {shown(folder)} resolves to "
                f"{shown(folder.resolve())}, outside the dataset; remove the link that leads "
                "there"
            )
        return folder

    def partition_path(self, day: date, region: str) -> Path:
        return self.region_dir(day, region) / PART_FILE

    def dates(self) -> list[date]:
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.glob("date=*"):
            if any(entry.glob(f"region=*/{PART_FILE}")) or any(
                _fragments(entry.glob(f"region=*/{DELTA_PREFIX}*/*"))
            ):
                found.append(date.fromisoformat(entry.name.removeprefix("date=")))
        return sorted(found)

    def deltas(self, day: date) -> list[Path]:
        """A day's delta fragments, oldest delivery first (within a delivery, regions hold
        disjoint keys, so their order does not matter)."""
        found = _fragments(self.day_dir(day).glob(f"region=*/{DELTA_PREFIX}*/*"))
        return sorted(found, key=lambda f: (delta_seq(f), f.parent.parent.name, f.name))

    def next_seq(self, day: date) -> int:
        seqs = [
            int(d.name.removeprefix(DELTA_PREFIX))
            for d in self.day_dir(day).glob(f"region=*/{DELTA_PREFIX}*")
            if d.is_dir()
        ]
        return max(seqs, default=0) + 1

    def day_files(self, day: date, region: str | None = None) -> list[Path]:
        """A day's compacted parts (by region), then its deltas in delivery order; only one
        region's when `region` is given."""
        parts = sorted(self.day_dir(day).glob(f"region=*/{PART_FILE}")) + self.deltas(day)
        if region is None:
            return parts
        folder = f"region={region}"
        return [f for f in parts if folder in (f.parent.name, f.parent.parent.name)]

    def regions(self, day: date) -> list[str]:
        """The regions a day holds rows of."""
        return sorted({_region_of(f) for f in self.day_files(day)})

    def files(self, start: date | None = None, end: date | None = None) -> list[Path]:
        """Files of the partitions with start <= date <= end, in the order readers apply them."""
        return [
            f
            for d in self.dates()
            if (start is None or d >= start) and (end is None or d <= end)
            for f in self.day_files(d)
        ]

    def read(
        self,
        start: date | None = None,
        end: date | None = None,
        columns: Iterable[str] | None = None,
    ) -> pl.DataFrame:
        """All rows of the partitions in [start, end], deltas applied; empty frame when there
        are none. Days come in date order; within a day, rows are sorted by (cell_id, ts)
        per compacted part, and over the day where deltas were applied."""
        return self.read_files(self.files(start, end), columns)

    def read_days(
        self,
        days: Iterable[date],
        region: str | None = None,
        columns: Iterable[str] | None = None,
        cells: tuple[str, str] | None = None,
    ) -> pl.DataFrame:
        """Rows of just these days, deltas applied, like `read`; optionally only one region's
        and only cells with `cells[0] <= cell_id <= cells[1]` (parts are sorted by cell_id,
        so row groups outside the range are skipped)."""
        wanted_days = set(days)
        files = [f for d in self.dates() if d in wanted_days for f in self.day_files(d, region)]
        return self.read_files(files, columns, cells)

    def read_files(
        self,
        files: list[Path],
        columns: Iterable[str] | None = None,
        cells: tuple[str, str] | None = None,
    ) -> pl.DataFrame:
        """Rows of `files` (parts and deltas, in the order readers apply them), deltas applied
        day by day: a day's deliveries only ever replace that day's keys, so days without
        deltas are read as they are, however many other days carry some."""
        if not files:
            return pl.DataFrame()
        wanted = list(columns) if columns is not None else None
        pieces = []
        for day_files, has_deltas in _runs_by_day(files):
            day_rows = scan(day_files)
            if cells is not None:
                day_rows = day_rows.filter(
                    pl.col("cell_id").is_between(pl.lit(cells[0]), pl.lit(cells[1]))
                )
            if wanted is not None:
                day_rows = day_rows.select(
                    list(dict.fromkeys([*KEYS, *wanted])) if has_deltas else wanted
                )
            if has_deltas:
                rows = latest_rows(day_rows.collect())
                pieces.append((rows.select(wanted) if wanted is not None else rows).lazy())
            else:
                pieces.append(day_rows)
        return pieces[0].collect() if len(pieces) == 1 else pl.concat(pieces).collect()

    def write_partition(
        self,
        df: pl.DataFrame | Iterable[pl.DataFrame],
        day: date,
        region: str,
        metadata: Mapping[str, str] | None = None,
    ) -> Path:
        path = self.partition_path(day, region)
        atomic_write_parquet(df, path, metadata, fast=self.fast)
        return path

    def replace_day(
        self, df: pl.DataFrame, day: date, metadata: Mapping[str, str] | None = None
    ) -> list[Path]:
        """Make `df` (rows of one day, unique keys) the whole content of that day, one
        compacted file per region.

        Regions present before but absent from `df` are removed after the new files are in
        place, then the day's deltas oldest first: whatever a crash leaves reads the same,
        because a remaining suffix of deltas re-applied over the new parts changes nothing.
        """
        return self.replace_day_parts(split_regions(df), day, metadata)

    def replace_day_parts(
        self,
        parts: Iterable[tuple[str, pl.DataFrame | Iterable[pl.DataFrame]]],
        day: date,
        metadata: Mapping[str, str] | None = None,
    ) -> list[Path]:
        """`replace_day` from (region, rows) pairs produced one at a time, the rows of a region
        a frame or an iterable of frames (chunks), so a day never has to be in memory whole."""
        written, regions = [], []
        for region, part in parts:
            written.append(self.write_partition(part, day, region, metadata))
            regions.append(region)
        failpoints.hit("lake.parts_replaced")
        day_dir = self.day_dir(day)
        if day_dir.is_dir():
            for region_dir in day_dir.glob("region=*"):
                if region_dir.name.removeprefix("region=") not in regions:
                    (region_dir / PART_FILE).unlink(missing_ok=True)
            for fragment in self.deltas(day):
                fragment.unlink()
                failpoints.hit("lake.delta_removed")
            for folder in day_dir.glob(f"region=*/{DELTA_PREFIX}*"):
                shutil.rmtree(folder, ignore_errors=True)
            for region_dir in day_dir.glob("region=*"):
                if region_dir.name.removeprefix("region=") not in regions:
                    shutil.rmtree(region_dir, ignore_errors=True)
            _fsync_dir(day_dir)
        return written

    def append(self, df: pl.DataFrame, day: date) -> list[Path]:
        """Add one delivery (rows of one day) as a delta, applied after everything already
        stored for the day; within it, a later row of a key wins."""
        stream = DeltaStream(self)
        for region, part in split_regions(df):
            stream.write(day, region, part)
        return stream.commit()

    def compact(self, day: date) -> int:
        """Fold a day's deltas into its compacted parts; the number of superseded rows.

        Region by region when no cell has rows in two regions (so no key can), holding one
        region in memory at a time; the whole day at once when a delivery moved a cell to
        another region, so that its latest delivery wins wherever it lands."""
        files = self.day_files(day)
        if not any(_is_delta(f) for f in files):
            return 0
        by_region: dict[str, list[Path]] = {}
        for f in files:  # parts, then deliveries in order, within each region
            by_region.setdefault(_region_of(f), []).append(f)
        groups = [by_region[r] for r in sorted(by_region)]
        whole_day = len(groups) > 1 and _cells_in_several(groups)
        superseded = 0

        def latest_parts() -> Iterator[tuple[str, pl.DataFrame]]:
            nonlocal superseded
            for group in [files] if whole_day else groups:
                stacked = scan(group).collect()
                latest = latest_rows(stacked)
                superseded += stacked.height - latest.height
                yield from split_regions(latest)

        self.replace_day_parts(latest_parts(), day)
        return superseded


def _cells_in_several(groups: list[list[Path]]) -> bool:
    """Whether any cell has rows in more than one of the groups of files (regions)."""
    cells = pl.concat([scan(group).select("cell_id").unique().collect() for group in groups])[
        "cell_id"
    ]
    return cells.n_unique() < cells.len()


PENDING_GLOB = f".{DELTA_PREFIX}*.tmp"


def _nothing() -> None:
    return None


def _write_fragment(target: Path, rows: pl.DataFrame) -> None:
    # The fragment is rewritten at compaction, so write speed beats size here: Arrow IPC,
    # uncompressed, costs little more than the copy to disk (parquet's encoding took most of
    # ingest's time) and is read back memory-mapped.
    rows.write_ipc(target, compression="uncompressed")


def _copy_fragment(source: Path, target: Path, sha256: str, rows: pl.DataFrame) -> None:
    shutil.copyfile(source, target)
    if file_sha256(target) != sha256:
        rows.write_parquet(target, compression="lz4", statistics=False)
    # A copy is flushed here, on a writer's thread: left to `commit`, flushing the copies of
    # a whole delivery held up its end (written fragments flush cheaply there).
    _fsync_file(target)


class DeltaStream:
    """One delivery being appended to a dataset: fragments are written as rows arrive, into
    a hidden folder per (day, region), and published together by `commit`.

    Fragments are named by one thread (the caller's), in delivery order; the writes that
    `prepare_write` and `prepare_adopt` return may run on several. Rows with the same key in
    two regions of one delivery would have no defined order; the caller resolves those
    before writing.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._pending: dict[tuple[date, str], Path] = {}
        self._fragments: dict[tuple[date, str], int] = {}
        # A writer killed before publishing leaves a hidden folder nobody reads: clear them.
        for orphan in dataset.root.glob(f"date=*/region=*/{PENDING_GLOB}"):
            shutil.rmtree(orphan, ignore_errors=True)

    def write(self, day: date, region: str, rows: pl.DataFrame) -> None:
        self.prepare_write(day, region, rows)()

    def adopt(self, day: date, region: str, source: Path, sha256: str, rows: pl.DataFrame) -> None:
        self.prepare_adopt(day, region, source, sha256, rows)()

    def prepare_write(self, day: date, region: str, rows: pl.DataFrame) -> Callable[[], None]:
        """Name the next fragment of (day, region) now, in delivery order; the returned call
        writes `rows` to it and may run on any thread."""
        if rows.is_empty():
            return _nothing
        return partial(_write_fragment, self._next_fragment(day, region, FRAGMENT_SUFFIX), rows)

    def prepare_adopt(
        self, day: date, region: str, source: Path, sha256: str, rows: pl.DataFrame
    ) -> Callable[[], None]:
        """Like `prepare_write`, for a fragment that is `source` byte for byte: a file whose
        rows are exactly `rows` (all in this day and region, in the lake's schema) is copied,
        not re-encoded. The copy is checked against the content hash the rows were read
        under; a file changed since falls back to writing `rows`. The source is only read."""
        if rows.is_empty():
            return _nothing
        return partial(
            _copy_fragment, source, self._next_fragment(day, region, ".parquet"), sha256, rows
        )

    def _next_fragment(self, day: date, region: str, suffix: str) -> Path:
        key = (day, region)
        if key not in self._pending:
            folder = self.dataset.region_dir(day, region)
            self._pending[key] = folder / f".{DELTA_PREFIX}{uuid.uuid4().hex}.tmp"
            self._pending[key].mkdir(parents=True)
        n = self._fragments.get(key, 0)
        self._fragments[key] = n + 1
        return self._pending[key] / f"f-{n:05d}{suffix}"

    def commit(self) -> list[Path]:
        """Make every fragment durable, then publish each (day, region) by one rename."""
        published = []
        next_seq: dict[date, int] = {}
        for (day, _region), pending in sorted(self._pending.items()):
            for fragment in sorted(pending.iterdir()):
                _fsync_file(fragment)
            _fsync_dir(pending)
            if day not in next_seq:
                next_seq[day] = self.dataset.next_seq(day)
            target = pending.with_name(f"{DELTA_PREFIX}{next_seq[day]:06d}")
            failpoints.hit("lake.before_rename")
            os.replace(pending, target)
            _fsync_dir(target.parent)
            published.append(target)
            failpoints.hit("lake.delta_published")
        self._pending.clear()
        return published

    def abort(self) -> None:
        for pending in self._pending.values():
            shutil.rmtree(pending, ignore_errors=True)
        self._pending.clear()
        self._fragments.clear()
