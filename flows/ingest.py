"""Flow: landing files -> lake/kpi."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from cellpulse.flows.common import retry_on_io
from cellpulse.ingest import IngestSummary, ingest_files
from cellpulse.mapping import load_mapping
from cellpulse.settings import Settings


@task(
    name="ingest-files",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=retry_on_io,
    cache_policy=NO_CACHE,
)
def ingest_task(
    paths: list[Path], settings: Settings, force: bool, mapping: str | None
) -> IngestSummary:
    """Ingest `paths` through the source `mapping` (a YAML file or a shipped mapping's
    name), or as contract-shaped files without one."""
    source = load_mapping(mapping) if mapping else None
    return ingest_files(paths, settings, force=force, mapping=source)


@flow(name="ingest")
def ingest_flow(
    settings: Settings,
    paths: list[Path] | None = None,
    force: bool = False,
    mapping: str | None = None,
) -> IngestSummary:
    """Ingest the given files or folders (default: the landing folder), contract-shaped or
    through a source mapping (a YAML file or a shipped mapping's name)."""
    summary = ingest_task(paths or [settings.layout.landing], settings, force, mapping)
    get_run_logger().info(
        f"ingest: {len(summary.files)} files read ({summary.count('ingested')} ingested, "
        f"{summary.count('skipped')} already ingested, {summary.count('duplicate')} duplicate "
        f"deliveries, {len(summary.rejected)} rejected); {summary.rows_accepted:,} rows "
        f"accepted, {summary.rows_quarantined:,} quarantined; {len(summary.days)} days, "
        f"{summary.partitions_written} partitions written to {summary.lake_dir}"
    )
    return summary
