"""Flow: lake/kpi -> lake/features for a range of days (default: every day that is stale)."""

from __future__ import annotations

from datetime import date

from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE

from cellpulse.features.spec import default_spec
from cellpulse.features.store import (
    DayBuild,
    FeatureSummary,
    affected_days,
    build_day,
    build_days,
    kpi_dataset,
    record_built,
    resolve_days,
)
from cellpulse.flows.common import dask_runner, retry_on_io
from cellpulse.ledger import Ledger
from cellpulse.settings import Settings


@task(name="stale-days", cache_policy=NO_CACHE)
def stale_days(settings: Settings, stage: str) -> list[date]:
    with Ledger(settings.ledger_path) as ledger:
        return ledger.stale(stage)


@task(name="build-features", retries=1, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def build_task(settings: Settings, days: list[date]) -> FeatureSummary:
    return build_days(settings, default_spec(settings.rop_minutes), days)


@task(name="build-day", retries=1, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def build_day_task(settings: Settings, day: date) -> DayBuild:
    return build_day(settings, default_spec(settings.rop_minutes), day)


@flow(name="features-on-dask")
def build_on_dask(settings: Settings, days: list[date]) -> FeatureSummary:
    """One task per day, spread over the Dask cluster's workers; each writes its own
    partition, so workers share nothing but the lake."""
    futures = build_day_task.map(unmapped(settings), days)
    built = sorted((f.result() for f in futures), key=lambda b: b.day)
    return record_built(settings, default_spec(settings.rop_minutes), built)


@flow(name="features")
def features_flow(
    settings: Settings, start: date | None = None, end: date | None = None, only_stale: bool = False
) -> FeatureSummary | None:
    """Build features for [start, end] (default: all ingested days), or only the days that
    ingest marked stale."""
    if only_stale:
        changed = stale_days(settings, "features")
        if not changed:
            return None
        spec = default_spec(settings.rop_minutes)
        days = affected_days(changed, spec, kpi_dataset(settings).dates())
    else:
        days = resolve_days(settings, start, end)
    if settings.dask_address:
        return build_on_dask.with_options(task_runner=dask_runner(settings))(settings, days)
    return build_task(settings, days)
