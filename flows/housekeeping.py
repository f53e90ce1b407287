"""Flow: keep the lake's disk in bounds — compact idle KPI days, remove days past each
dataset's retention (cellpulse.housekeeping holds the logic)."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from cellpulse import housekeeping
from cellpulse.flows.common import retry_on_io
from cellpulse.settings import Settings


@task(name="housekeep-lake", retries=1, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def housekeep_lake(settings: Settings, dry_run: bool) -> housekeeping.Outcome:
    """Survey, plan and carry out; safe to retry (every step is idempotent)."""
    return housekeeping.housekeep(
        settings.layout, settings.housekeeping, datetime.now(UTC), dry_run
    )


@flow(name="housekeeping")
def housekeeping_flow(settings: Settings, dry_run: bool = False) -> housekeeping.Outcome:
    """Compact idle KPI days and remove days past retention; logs what it did."""
    outcome = housekeep_lake(settings, dry_run)
    logger = get_run_logger()
    for line in outcome.lines():
        logger.info(line)
    return outcome
