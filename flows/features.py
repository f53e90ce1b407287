"""Flow: lake/kpi -> lake/features for a range of days (default: every day that is stale)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from cellpulse import progress
from cellpulse.features.spec import FeatureParams, FeatureSpec
from cellpulse.features.store import (
    DayBuild,
    FeatureSummary,
    affected_days,
    build_day,
    ingested_days,
    inputs_fingerprint,
    is_current,
    lake_spec,
    record_built,
)
from cellpulse.flows.common import dask_runner, retry_on_io
from cellpulse.ledger import Ledger
from cellpulse.settings import Settings
from cellpulse.window import DayWindow


@task(name="stale-days", cache_policy=NO_CACHE)
def stale_days(settings: Settings, stage: str) -> list[date]:
    """The days whose `stage` output ingest (or a feature rebuild) marked stale."""
    with Ledger(settings.layout.ledger) as ledger:
        return ledger.stale(stage)


def _day_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    settings: Settings = parameters["settings"]
    day: date = parameters["day"]
    spec: FeatureSpec = parameters["spec"]
    fingerprint = inputs_fingerprint(settings.layout, spec, day, FeatureParams.of(settings))
    return f"features-{day}-{fingerprint}"


@task(
    name="build-day",
    retries=1,
    retry_condition_fn=retry_on_io,
    cache_key_fn=_day_cache_key,
    cache_expiration=timedelta(days=60),
    persist_result=True,
)
def build_day_task(settings: Settings, spec: FeatureSpec, day: date) -> DayBuild:
    """One day's features. Cached on the day's inputs (KPI files of the day and its
    lookback, the spec): re-running an unchanged day reuses the build."""
    return build_day(settings.layout, spec, day, FeatureParams.of(settings))


def _task_for(settings: Settings, spec: FeatureSpec, day: date) -> Any:
    """The build task, forced to run when the day's stored output is missing or was built
    by another spec (a cached result would not bring it back)."""
    current = is_current(settings.layout, spec, day)
    return build_day_task if current else build_day_task.with_options(refresh_cache=True)


def build_each_day(settings: Settings, spec: FeatureSpec, days: list[date]) -> FeatureSummary:
    """Build `days` one after the other in this process (bounded memory), reusing the
    cached build of a day whose inputs did not change."""
    built, reused = [], 0
    for day in progress.track(days, "features: building days", total=len(days)):
        state = _task_for(settings, spec, day)(settings, spec, day, return_state=True)
        reused += state.name == "Cached"
        built.append(state.result())
    return record_built(settings.layout, spec, built, reused)


@flow(name="features-on-dask")
def build_on_dask(settings: Settings, spec: FeatureSpec, days: list[date]) -> FeatureSummary:
    """One task per day, spread over the Dask cluster's workers; each writes its own
    partition, so workers share nothing but the lake."""
    futures = [_task_for(settings, spec, day).submit(settings, spec, day) for day in days]
    for future in futures:
        future.wait()
    reused = sum(f.state.name == "Cached" for f in futures)
    built = sorted((f.result() for f in futures), key=lambda b: b.day)
    return record_built(settings.layout, spec, built, reused)


@flow(name="features")
def features_flow(
    settings: Settings, window: DayWindow = DayWindow(), only_stale: bool = False
) -> FeatureSummary | None:
    """Build the features of the ingested days in `window` (default: all of them), or, with
    `only_stale`, of the days that ingest marked stale and those whose lookback reads them.

    Features are built for the KPIs the lake delivers (`lake_spec`): the spec training and
    scoring expect too.

    Returns:
        What was built (with what it holds of the full spec: `coverage`), or None when
        `only_stale` found nothing stale.
    """
    spec = lake_spec(settings.layout, FeatureParams.of(settings))
    logger = get_run_logger()
    if only_stale:
        changed = stale_days(settings, "features")
        days = affected_days(changed, spec, settings.layout.kpi.dates())
        if not days:
            logger.info("features: no stale days; nothing to build")
            return None
    else:
        days = ingested_days(settings.layout, window)
    if settings.dask_address:
        built = build_on_dask.with_options(task_runner=dask_runner(settings))(settings, spec, days)
    else:
        built = build_each_day(settings, spec, days)
    logger.info(
        f"features: {len(built.days)} days ({built.days[0]} to {built.days[-1]}), "
        f"{built.rows:,} rows, {built.cells} cells, {built.columns} columns "
        f"({built.reused} unchanged days reused) written to {built.out_dir}"
    )
    return built
