"""One ingest run: landing files in, validated rows out to lake/kpi, every file recorded in
the ledger and reported."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import polars as pl

from cellpulse import lake, progress
from cellpulse.ingest.batches import Batch, Written
from cellpulse.ingest.coverage import Coverage
from cellpulse.ingest.landing import archive, list_landing_files
from cellpulse.ingest.pipeline import READ_THREADS, Reading, read_ahead
from cellpulse.ingest.quarantine import write_quarantine
from cellpulse.ingest.results import FileResult, IngestSummary
from cellpulse.ingest.rules import RuleLimits
from cellpulse.layout import Layout
from cellpulse.ledger import Ledger
from cellpulse.mapping import Mapping
from cellpulse.settings import IngestSettings, Settings

# Writing fragments is mostly the kernel copying them to the page cache; one thread fell
# behind the readers on large files and left a backlog to write at the end of a delivery.
WRITE_THREADS = 2


def ingest_files(
    paths: Sequence[Path],
    settings: Settings,
    now: datetime | None = None,
    force: bool = False,
    mapping: Mapping | None = None,
) -> IngestSummary:
    """Ingest landing files into lake/kpi. Idempotent: a file whose content was seen before
    is skipped (a duplicate under another name is recorded as such).

    Args:
        paths: Landing files, or folders to take every file below.
        settings: The home and its ingest settings; each stage below gets its slice.
        now: The run's clock, against which timestamps are judged (default: now).
        force: Read again files whose content was seen before.
        mapping: How to read a foreign export (see cellpulse.mapping); None for
            contract-shaped parquet.
    """
    now = now or datetime.now(UTC)
    limits = RuleLimits.of(settings, newest_stored(settings.layout))
    reading = Reading(limits, now, mapping, settings.ingest.bad_rows)
    files = list_landing_files(paths)
    return ingest_landed(files, reading, settings.layout, settings.ingest, force)


def ingest_landed(
    files: list[Path], reading: Reading, layout: Layout, policy: IngestSettings, force: bool
) -> IngestSummary:
    """`ingest_files` on listed landing files, in delivery order: files are read ahead on a
    few threads while accepted rows are written in batches, each batch published to the
    lake before its files are recorded in the ledger."""
    kpi = layout.kpi
    results: list[FileResult] = []
    written = Written()
    with (
        Ledger(layout.ledger) as ledger,
        ThreadPoolExecutor(READ_THREADS) as pool,
        ThreadPoolExecutor(WRITE_THREADS) as writer,
    ):
        batch = Batch(layout, policy, writer)
        try:
            outcomes = read_ahead(files, reading, ledger, force, pool)
            for outcome in progress.track(outcomes, "ingest: reading files", total=len(files)):
                result, record, good = outcome.result, outcome.record, outcome.good
                results.append(result)
                if outcome.report:
                    write_quarantine(layout, result, outcome.quarantined)
                if good is None:
                    if record is not None:
                        ledger.record([record])
                        if record.status == "duplicate" and policy.after == "archive":
                            archive([result.path], layout)
                    continue
                assert record is not None
                if batch.is_full_before(good):
                    batch.flush(ledger, written)
                    batch = Batch(layout, policy, writer)
                batch.add(result, record, good)
            batch.flush(ledger, written)
        finally:
            batch.abort()  # after an error: drop what was written but not published
    return IngestSummary(
        results,
        written.partitions,
        sorted(written.days),
        kpi.root,
        layout.quarantine,
        written.replaced,
        Coverage.of_counts(written.values, written.rows),
    )


def newest_stored(layout: Layout) -> datetime | None:
    """The newest ts the lake holds (None: an empty lake), from which retention may be
    counted back (`ingest.retention_from: data`)."""
    days = layout.kpi.dates()
    if not days:
        return None
    newest = lake.scan(layout.kpi.day_files(days[-1])).select(pl.col("ts").max()).collect()
    return cast(datetime | None, newest.item())
