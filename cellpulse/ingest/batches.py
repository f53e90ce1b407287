"""Accepted rows on their way to the lake: split into partitions, gathered into batches that
are written as one delivery each, then recorded in the ledger."""

from __future__ import annotations

import itertools
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import cast

import polars as pl

from cellpulse import contract, failpoints, lake
from cellpulse.ingest.landing import archive
from cellpulse.ingest.results import FileResult
from cellpulse.ingest.validation import last_per_key
from cellpulse.layout import Layout
from cellpulse.ledger import FileRecord, Ledger
from cellpulse.settings import IngestSettings


@dataclass
class Written:
    """What the batches of one ingest run wrote."""

    partitions: int = 0
    replaced: int = 0
    days: set[date] = field(default_factory=set)
    rows: int = 0  # rows written (after per-KPI files of one key were combined)
    values: dict[str, int] = field(default_factory=dict)  # of them, holding each measurement

    def count(self, parts: list[pl.DataFrame]) -> None:
        """Add the rows of `parts` and how many hold each measurement (KPI coverage)."""
        for rows in parts:
            self.rows += rows.height
            held = rows.select(pl.col(m).is_not_null().sum() for m in contract.MEASUREMENT_NAMES)
            for name, n in held.row(0, named=True).items():
                self.values[name] = self.values.get(name, 0) + int(n)


@dataclass(frozen=True)
class Accepted:
    """A file's accepted rows split into lake partitions, prepared in the reading thread."""

    parts: dict[tuple[date, str], pl.DataFrame]  # (day, region) -> rows
    key_hash: pl.Series  # 64-bit hash of each row's (cell_id, ts), to find re-deliveries
    rows: int
    span: tuple[datetime, datetime] | None  # first and last ts; None without rows
    # (path, sha256) of a landing file that is its single partition byte for byte.
    adopt: tuple[Path, str] | None = None
    # The measurements the file carried: a per-KPI or long file sets only these, so its rows
    # must not blank the other columns of the same keys (see Batch._combine).
    carried: tuple[str, ...] = contract.MEASUREMENT_NAMES

    @property
    def partial(self) -> bool:
        """Whether the file carried only some of the contract's measurements."""
        return len(self.carried) < len(contract.MEASUREMENT_NAMES)

    @property
    def first_day(self) -> date:
        """The earliest day the rows fall on."""
        return min(day for day, _ in self.parts)

    @property
    def last_day(self) -> date:
        """The latest day the rows fall on."""
        return max(day for day, _ in self.parts)


def accept(good: pl.DataFrame, carried: tuple[str, ...] = contract.MEASUREMENT_NAMES) -> Accepted:
    """A file's accepted rows, prepared for the batch: split into partitions, with their
    key hashes, the span of their timestamps and the measurements the file carried."""
    key_hash = good.select(pl.struct(*lake.KEYS).hash()).to_series()
    parts = split_partitions(good)
    ts = good["ts"]
    span = (cast(datetime, ts.min()), cast(datetime, ts.max())) if good.height else None
    return Accepted(parts, key_hash, good.height, span, carried=carried)


def split_partitions(rows: pl.DataFrame) -> dict[tuple[date, str], pl.DataFrame]:
    """Rows by (UTC day, region); a file usually holds one day, which needs no split."""
    parts: dict[tuple[date, str], pl.DataFrame] = {}
    if rows.is_empty():
        return parts
    ts = rows["ts"]
    lo, hi = cast(datetime, ts.min()), cast(datetime, ts.max())
    if lo.date() == hi.date():  # ts is UTC (conform made it so): its date is the UTC day
        by_day = {lo.date(): rows}
    else:
        with_day = rows.with_columns(pl.col("ts").dt.date().alias("_day"))
        split = with_day.partition_by("_day", as_dict=True, include_key=False)
        by_day = {cast(date, d): part for (d,), part in split.items()}
    for d, day_rows in sorted(by_day.items()):
        for region, part in lake.split_regions(day_rows):
            parts[(d, region)] = part
    return parts


class Batch:
    """Accepted files that go to the lake as one delivery. Their rows are written (by the
    writer threads) while later files are still being read; `flush` publishes them and then
    records the files in the ledger.

    Args:
        layout: Where lake/kpi, the landing folder and the archive lie.
        policy: When a batch is full, whether ingested files are archived, and how many
            deliveries a day holds before it is compacted.
        writer: The threads that write fragments.
    """

    def __init__(self, layout: Layout, policy: IngestSettings, writer: ThreadPoolExecutor) -> None:
        self.layout = layout
        self.policy = policy
        self.kpi = layout.kpi
        self.writer = writer
        self.files: list[tuple[FileResult, FileRecord, Accepted]] = []
        self.rows = 0
        self.stream = lake.DeltaStream(self.kpi)
        self.writes: list[Future[None]] = []

    def add(self, result: FileResult, record: FileRecord, accepted: Accepted) -> None:
        """Take a file's accepted rows; their fragments start being written at once."""
        self.files.append((result, record, accepted))
        self.rows += accepted.rows
        for (day, region), rows in accepted.parts.items():
            if accepted.adopt is not None:
                source, sha = accepted.adopt
                write = self.stream.prepare_adopt(day, region, source, sha, rows)
            else:
                write = self.stream.prepare_write(day, region, rows)
            self.writes.append(self.writer.submit(write))

    def is_full_before(self, accepted: Accepted) -> bool:
        """Whether the batch should be flushed before `accepted` joins it.

        Batches bound memory for a backlog of any size; each is recorded in the ledger once
        its partitions are safely written. A batch ends where a new day starts, so a day gets
        one delivery per run, not one per batch that touched it; a hard cap keeps files that
        each span many days from growing a batch without end."""
        limit = self.policy.batch_rows
        return bool(self.files) and (
            (self.rows >= limit and self.ends_before(accepted)) or self.rows >= 4 * limit
        )

    def ends_before(self, accepted: Accepted) -> bool:
        """Whether every row of `accepted` falls on a later day than every row of the batch."""
        if not accepted.rows:
            return True
        newest = [a.last_day for _, _, a in self.files if a.rows]
        return not newest or accepted.first_day > max(newest)

    def flush(self, ledger: Ledger, written: Written) -> None:
        """Publish the batch's rows, then record its files; compact days holding
        `ingest.compact_parts` deliveries.

        Partitions are published before the ledger: a crash in between means the files are
        read again next time, and delivering the same rows twice reads the same as once.
        """
        for write in self.writes:
            write.result()
        accepted = [a for _, _, a in self.files if a.rows]
        parts: list[tuple[date, pl.DataFrame]] = [
            (day, rows) for a in accepted for (day, _), rows in a.parts.items()
        ]
        if any(a.partial for a in accepted):
            parts = self._combine(accepted, written)
        elif accepted and self._redelivers_keys(accepted):
            parts = self._rewrite_latest(parts, written)
        written.count([rows for _, rows in parts])
        days = {day for day, _ in parts}
        for day in sorted(days):
            stored = _stored_keys_in(self.kpi, day, [rows for d, rows in parts if d == day])
            written.replaced += stored
        written.partitions += len(self.stream.commit())
        failpoints.hit("ingest.before_ledger")
        ledger.record([rec for _, rec, _ in self.files], stale_days=days)
        written.days |= days
        if self.policy.after == "archive":
            archive([r.path for r, _, _ in self.files], self.layout)
        for day in sorted(days):
            if len({lake.delta_seq(f) for f in self.kpi.deltas(day)}) >= self.policy.compact_parts:
                self.kpi.compact(day)
                failpoints.hit("ingest.compacted")
        self.files, self.writes = [], []

    def _rewrite_latest(
        self, parts: list[tuple[date, pl.DataFrame]], written: Written
    ) -> list[tuple[date, pl.DataFrame]]:
        """Files of this batch re-deliver one another's keys (perhaps moving a key to another
        region): write the batch again with the later file's row per key."""
        self.stream.abort()
        stacked = pl.concat([rows for _, rows in parts], rechunk=False)
        unique = last_per_key(stacked)  # keys are unique within a file: order is kept
        written.replaced += stacked.height - unique.height
        rewritten = []
        for (day, region), rows in split_partitions(unique).items():
            self.stream.write(day, region, rows)
            rewritten.append((day, rows))
        return rewritten

    def _combine(
        self, accepted: list[Accepted], written: Written
    ) -> list[tuple[date, pl.DataFrame]]:
        """Files that carry only some measurements (one file per KPI, a long export): the
        rows of one key are combined, each file setting only the columns it carried, over
        the row the lake already holds for the key. The batch is written again as whole
        rows, so the lake's last-delivery-wins never blanks a KPI another file delivered."""
        self.stream.abort()
        flag = [f"_carried {m}" for m in contract.MEASUREMENT_NAMES]
        frames = []
        for a in accepted:
            carried = set(a.carried)
            pairs = zip(contract.MEASUREMENT_NAMES, flag, strict=True)
            marks = [pl.lit(m in carried).alias(f) for m, f in pairs]
            frames += [rows.with_columns(marks) for rows in a.parts.values()]
        batch = pl.concat(frames, how="diagonal_relaxed")
        keys = batch.select(lake.KEYS).unique()
        days = sorted({d for a in accepted for d, _ in a.parts})
        stored = self.kpi.read_days(days)
        if stored.height:
            stored = stored.join(keys, on=list(lake.KEYS), how="semi").with_columns(
                pl.lit(True).alias(f) for f in flag
            )
            batch = pl.concat([stored, batch], how="diagonal_relaxed")  # stored first: older
        written.replaced += batch.height - stored.height - keys.height
        columns = contract.schema()
        combined = batch.group_by(lake.KEYS, maintain_order=True).agg(
            *(pl.col(d).last() for d in contract.DIMENSIONS),
            *(
                pl.col(m).filter(pl.col(f)).last()
                for m, f in zip(contract.MEASUREMENT_NAMES, flag, strict=True)
            ),
        )
        combined = combined.select(pl.col(c).cast(t) for c, t in columns.items())
        rewritten = []
        for (day, region), rows in split_partitions(combined).items():
            self.stream.write(day, region, rows)
            rewritten.append((day, rows))
        return rewritten

    def abort(self) -> None:
        """Drop what was written but not published (after an error)."""
        for write in self.writes:
            write.cancel()
        wait(self.writes)
        self.stream.abort()

    @staticmethod
    def _redelivers_keys(accepted: list[Accepted]) -> bool:
        # Files covering disjoint periods (hourly exports, say) cannot share a key: that is
        # proved from their first and last ts without looking at a key.
        spans = sorted(a.span for a in accepted if a.span is not None)
        if all(later[0] > earlier[1] for earlier, later in itertools.pairwise(spans)):
            return False
        hashes = pl.concat([a.key_hash for a in accepted], rechunk=False)
        return hashes.n_unique() < hashes.len()  # a hash collision can only lower the count


def _stored_keys_in(kpi: lake.Dataset, day: date, parts: list[pl.DataFrame]) -> int:
    """How many of the parts' keys the lake already holds for `day` (rows a delivery
    replaces)."""
    files = kpi.day_files(day)
    if not files:
        return 0
    keys = pl.concat([p.select(lake.KEYS) for p in parts])
    lo, hi = keys["ts"].min(), keys["ts"].max()
    stored = lake.scan(files).select(lake.KEYS).filter(pl.col("ts").is_between(lo, hi))
    hits = keys.lazy().join(stored, on=list(lake.KEYS), how="semi")
    return int(hits.select(pl.len()).collect().item())
