"""A partitioned dataset of the lake: where its partitions lie, reading them with deltas
applied, replacing a day, appending and compacting deliveries."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from cellpulse import failpoints
from cellpulse.echo import shown
from cellpulse.errors import ContractError
from cellpulse.lake.deltas import DeltaStream
from cellpulse.lake.files import atomic_write_parquet, fsync_dir, fsync_file, temp_beside
from cellpulse.lake.partitions import (
    DELTA_PREFIX,
    DROPPED_PREFIX,
    NAME_MAX,
    PART_FILE,
    delta_seq,
    fragments,
    is_delta,
    region_dir_of,
    region_of,
)
from cellpulse.lake.tables import KEYS, latest_rows, scan, split_regions


class Dataset:
    """One partitioned dataset of the lake, e.g. `lake/kpi`.

    `fast`: partitions are written with lz4 rather than zstd, for derived data that is read
    far more often than it is kept: somewhat larger, read faster (figures in
    bench/RESULTS.md)."""

    def __init__(self, root: Path, fast: bool = False) -> None:
        self.root = root
        self.fast = fast

    def day_dir(self, day: date) -> Path:
        """The folder of a day's partitions (`date=YYYY-MM-DD`)."""
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
        """The compacted part of a (day, region) partition."""
        return self.region_dir(day, region) / PART_FILE

    def dates(self) -> list[date]:
        """The days holding rows (a compacted part or a delivery), oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.glob("date=*"):
            if any(entry.glob(f"region=*/{PART_FILE}")) or any(
                fragments(entry.glob(f"region=*/{DELTA_PREFIX}*/*"))
            ):
                found.append(date.fromisoformat(entry.name.removeprefix("date=")))
        return sorted(found)

    def deltas(self, day: date) -> list[Path]:
        """A day's delta fragments, oldest delivery first (within a delivery, regions hold
        disjoint keys, so their order does not matter)."""
        found = fragments(self.day_dir(day).glob(f"region=*/{DELTA_PREFIX}*/*"))
        return sorted(found, key=lambda f: (delta_seq(f), f.parent.parent.name, f.name))

    def next_seq(self, day: date) -> int:
        """The sequence number the next delivery to a day gets (after every one stored)."""
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
        return sorted({region_of(f) for f in self.day_files(day)})

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
        """Replace a (day, region) partition's compacted part atomically (deltas are left
        alone: `replace_day` removes them); its path."""
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
        folded: list[Path] | None = None,
    ) -> list[Path]:
        """`replace_day` from (region, rows) pairs produced one at a time, the rows of a region
        a frame or an iterable of frames (chunks), so a day never has to be in memory whole.

        `folded`: remove only these deltas (the ones the new parts were made from), so that a
        delivery published while they were written stays, applied over the new parts."""
        written, regions = [], []
        for region, part in parts:
            written.append(self.write_partition(part, day, region, metadata))
            regions.append(region)
        failpoints.hit("lake.parts_replaced")
        self._retire_rest(day, regions, folded)
        return written

    def _retire_rest(self, day: date, regions: list[str], folded: list[Path] | None) -> None:
        """After a day's new parts of `regions` are in place: remove its other regions'
        parts and its deltas (only `folded` ones, if given), oldest first."""
        day_dir = self.day_dir(day)
        if day_dir.is_dir():
            for region_dir in day_dir.glob("region=*"):
                if region_dir.name.removeprefix("region=") not in regions:
                    (region_dir / PART_FILE).unlink(missing_ok=True)
            removed = self.deltas(day) if folded is None else [f for f in folded if f.exists()]
            for fragment in removed:
                fragment.unlink()
                failpoints.hit("lake.delta_removed")
            for folder in day_dir.glob(f"region=*/{DELTA_PREFIX}*"):
                # Emptied here or by a compaction a crash interrupted; a delivery is only
                # ever published as a folder holding fragments.
                if folder in {f.parent for f in removed} or not any(folder.iterdir()):
                    shutil.rmtree(folder, ignore_errors=True)
            for region_dir in day_dir.glob("region=*"):
                gone = region_dir.name.removeprefix("region=") not in regions
                if gone and not any(region_dir.glob(f"{DELTA_PREFIX}*")):
                    shutil.rmtree(region_dir, ignore_errors=True)
            fsync_dir(day_dir)

    def days_writer(self, days: Iterable[date]) -> DaysWriter:
        """A writer that makes the rows it is given, chunk by chunk, the whole content of
        `days` (see `DaysWriter`)."""
        return DaysWriter(self, days)

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
        if not any(is_delta(f) for f in files):
            return 0
        by_region: dict[str, list[Path]] = {}
        for f in files:  # parts, then deliveries in order, within each region
            by_region.setdefault(region_of(f), []).append(f)
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

        self.replace_day_parts(latest_parts(), day, folded=[f for f in files if is_delta(f)])
        return superseded

    def size(self, day: date | None = None) -> int:
        """Bytes on disk of a day's files (parts and deltas), or of the whole dataset."""
        root = self.root if day is None else self.day_dir(day)
        if not root.is_dir():
            return 0
        return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())

    def drop_day(self, day: date) -> bool:
        """Remove a whole day (every region, parts and deltas); whether it was there.

        The day's folder is first renamed to a hidden name, which readers never list, then
        deleted: a reader sees the whole day or none of it, and a crash in between leaves a
        hidden folder that the next `drop_day` (or `clear_dropped`) removes."""
        self.clear_dropped()
        folder = self.day_dir(day)
        if not folder.is_dir():
            return False
        doomed = self.root / f"{DROPPED_PREFIX}{folder.name}.{uuid.uuid4().hex}"
        os.replace(folder, doomed)
        fsync_dir(self.root)
        failpoints.hit("lake.day_dropped")
        shutil.rmtree(doomed)
        return True

    def clear_dropped(self) -> None:
        """Finish removing days whose removal a crash interrupted."""
        if self.root.is_dir():
            for doomed in self.root.glob(f"{DROPPED_PREFIX}*"):
                shutil.rmtree(doomed, ignore_errors=True)


class DaysWriter:
    """`Dataset.replace_day` for several days whose rows come in chunks (e.g. a day's
    scores, scored a few cells at a time): each chunk's rows are appended to a temporary
    parquet file per (day, region) as they come, in their order, so no more than a chunk is
    ever in memory; `commit` puts every file in place (each atomically, as `replace_day`
    does, a day with no rows left empty) and `abort` drops them, leaving the days as they
    were."""

    def __init__(self, dataset: Dataset, days: Iterable[date]) -> None:
        self.dataset = dataset
        self.days = sorted(set(days))
        self._open: dict[tuple[date, str], tuple[Path, pq.ParquetWriter]] = {}

    def write(self, rows: pl.DataFrame) -> None:
        """Append `rows` (of the writer's days; their keys unique over all chunks)."""
        if rows.is_empty():
            return
        days = rows["ts"].dt.date()
        for day in days.unique().sort().to_list():
            if day not in self.days:
                raise ValueError(f"{self.dataset.root}: rows of {day}, not of {self.days}")
            of_day = rows.filter(days == day) if days.n_unique() > 1 else rows
            for region, part in split_regions(of_day):
                table = part.to_arrow()
                self._writer(day, region, table.schema).write_table(table)

    def _writer(self, day: date, region: str, schema: pa.Schema) -> pq.ParquetWriter:
        key = (day, region)
        if key not in self._open:
            path = self.dataset.partition_path(day, region)
            tmp = temp_beside(path)
            # The codecs `atomic_write_parquet` writes a part with.
            codec, level = ("lz4", None) if self.dataset.fast else ("zstd", 1)
            # Dictionaries for the columns that repeat (ids, names), not for measurements,
            # which rarely do: as polars writes the parts `atomic_write_parquet` writes,
            # smaller than pyarrow's default and written in half its time.
            repeating = [f.name for f in schema if not pa.types.is_floating(f.type)]
            writer = pq.ParquetWriter(
                tmp, schema, compression=codec, compression_level=level, use_dictionary=repeating
            )
            self._open[key] = (tmp, writer)
        return self._open[key][1]

    def commit(self) -> list[Path]:
        """Put every day's new files in place and retire what they replace; their paths."""
        written = []
        for (day, region), (tmp, writer) in sorted(self._open.items()):
            writer.close()
            fsync_file(tmp)
            path = self.dataset.partition_path(day, region)
            os.replace(tmp, path)
            fsync_dir(path.parent)
            written.append(path)
        failpoints.hit("lake.parts_replaced")
        for day in self.days:
            regions = [r for d, r in self._open if d == day]
            self.dataset._retire_rest(day, regions, None)
        self._open.clear()
        return written

    def abort(self) -> None:
        """Drop what was written; the days keep their content."""
        for tmp, writer in self._open.values():
            writer.close()
            tmp.unlink(missing_ok=True)
        self._open.clear()


def _cells_in_several(groups: list[list[Path]]) -> bool:
    """Whether any cell has rows in more than one of the groups of files (regions)."""
    cells = pl.concat([scan(group).select("cell_id").unique().collect() for group in groups])[
        "cell_id"
    ]
    return cells.n_unique() < cells.len()


def _runs_by_day(files: list[Path]) -> list[tuple[list[Path], bool]]:
    """`files` cut by day, in their order, each run with whether it holds deltas: a day
    with deltas is a run of its own, and consecutive days without share one (one scan)."""
    days: dict[Path, list[Path]] = {}
    for f in files:
        days.setdefault(region_dir_of(f).parent, []).append(f)
    runs: list[tuple[list[Path], bool]] = []
    for day_files in days.values():
        deltas = any(is_delta(f) for f in day_files)
        if runs and not deltas and not runs[-1][1]:
            runs[-1][0].extend(day_files)
        else:
            runs.append((list(day_files), deltas))
    return runs
