"""Flow: backfill a range of days, stage by stage (features, then score), one day at a time.

What each day needs is planned in the core (`cellpulse.backfill`); progress shows in the CLI
(a bar) and in the Prefect UI (a progress artifact).
"""

from __future__ import annotations

import time
from datetime import date

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from cellpulse import progress
from cellpulse.backfill import STAGES, BackfillSummary, check_stages, current_outputs, plan
from cellpulse.features.spec import FeatureParams
from cellpulse.features.store import ingested_days, lake_spec
from cellpulse.flows.features import build_each_day
from cellpulse.flows.score import score_flow
from cellpulse.settings import Settings
from cellpulse.window import DayWindow


@task(name="plan-backfill", cache_policy=NO_CACHE)
def plan_backfill(
    settings: Settings, window: DayWindow, stages: tuple[str, ...], force: bool
) -> dict[date, list[str]]:
    """Each ingested day of `window` and the stages it needs (see `cellpulse.backfill.plan`)."""
    days = ingested_days(settings.layout, window)
    return plan(days, stages, *current_outputs(settings.layout), force)


@flow(name="backfill")
def backfill_flow(
    settings: Settings,
    window: DayWindow = DayWindow(),
    stages: tuple[str, ...] = STAGES,
    force: bool = False,
) -> BackfillSummary:
    """Run `stages` for every ingested day in `window` that needs them (all with `force`)."""
    check_stages(stages)
    todo = plan_backfill(settings, window, stages, force)
    summary = BackfillSummary(list(todo), stages)
    bar = create_progress_artifact(0.0, key="backfill", description=f"cellpulse backfill {window}")
    # One spec for every day of the backfill.
    spec = lake_spec(settings.layout, FeatureParams.of(settings))
    for i, day in enumerate(progress.track(list(todo), "backfill: days", total=len(todo)), 1):
        t0 = time.perf_counter()
        if "features" in todo[day]:
            build_each_day(settings, spec, [day])
        if "score" in todo[day]:
            score_flow(settings, [day])
        summary.ran[day] = todo[day]
        summary.seconds[day] = time.perf_counter() - t0
        update_progress_artifact(bar, 100.0 * i / len(todo))
    get_run_logger().info(
        f"backfill {window} ({', '.join(stages)}): {len(summary.days)} days with KPIs, "
        f"{sum(1 for s in summary.ran.values() if s)} run, {len(summary.skipped)} already current"
    )
    return summary
