"""The delta stream: one delivery appended to a dataset as fragments in hidden folders,
published all or nothing by renaming each folder."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from cellpulse import failpoints
from cellpulse.lake.files import file_sha256, fsync_dir, fsync_file
from cellpulse.lake.partitions import DELTA_PREFIX, FRAGMENT_SUFFIX

if TYPE_CHECKING:
    from cellpulse.lake.dataset import Dataset


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
    fsync_file(target)


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
        """Write `rows` as the next fragment of (day, region), on this thread."""
        self.prepare_write(day, region, rows)()

    def adopt(self, day: date, region: str, source: Path, sha256: str, rows: pl.DataFrame) -> None:
        """Copy `source` as the next fragment of (day, region), on this thread (see
        `prepare_adopt`)."""
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
                fsync_file(fragment)
            fsync_dir(pending)
            if day not in next_seq:
                next_seq[day] = self.dataset.next_seq(day)
            target = pending.with_name(f"{DELTA_PREFIX}{next_seq[day]:06d}")
            failpoints.hit("lake.before_rename")
            os.replace(pending, target)
            fsync_dir(target.parent)
            published.append(target)
            failpoints.hit("lake.delta_published")
        self._pending.clear()
        return published

    def abort(self) -> None:
        """Drop every fragment written and not yet published; the dataset is unchanged."""
        for pending in self._pending.values():
            shutil.rmtree(pending, ignore_errors=True)
        self._pending.clear()
        self._fragments.clear()
