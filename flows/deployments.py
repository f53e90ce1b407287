"""The deployments `cellpulse serve` registers: what runs when, and how runs behave.

| deployment        | flow             | schedule (default)          | concurrency |
|-------------------|------------------|-----------------------------|-------------|
| `every-rop`       | rop-pipeline     | every ROP, 5 min after it   | 1           |
| `features-daily`  | features         | 01:00 every day             | 1           |
| `train-weekly`    | train            | 02:00 on Sundays            | 1           |
| `monitor-daily`   | monitor          | 03:00 every day             | 1           |
| `housekeeping-daily` | housekeeping  | 04:30 every day             | 1           |

Each deployment runs a thin wrapper flow that takes plain parameters (the home folder and
an optional config file), so the Prefect UI shows and accepts them. Catch-up policy: a run
that would overlap a running one of the same deployment is cancelled (CANCEL_NEW), and a
scheduled run that starts more than `schedules.late_after_minutes` late is skipped; the
stages are incremental, so the next run catches up on everything still pending.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.runtime import flow_run
from prefect.schedules import Cron, Interval, Schedule

from cellpulse.settings import Settings, load_settings

ONE_AT_A_TIME = ConcurrencyLimitConfig(
    limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
)


def _settings(home: str, config: str | None) -> Settings:
    from cellpulse.runtime import configure_process

    settings = load_settings(Path(config) if config else None, home=Path(home))
    configure_process(settings)
    return settings


SKIPPED_LATE = "skipped: late"


def _prepared(home: str, config: str | None) -> Settings | None:
    """Settings for this run, or None when a scheduled run started too late to be worth it."""
    settings = _settings(home, config)
    return None if _too_late(settings) else settings


def _too_late(settings: Settings) -> bool:
    """Whether this scheduled run started so late that the next one should do its work."""
    expected = flow_run.scheduled_start_time
    if expected is None or flow_run.get_parameters().get("manual"):
        return False
    late = datetime.now(UTC) - expected
    if late > timedelta(minutes=settings.schedules.late_after_minutes):
        get_run_logger().warning("started %s late; skipped, the next run catches up", late)
        return True
    return False


def _scheduled(home: str, config: str | None, work: Callable[[Settings], str]) -> str:
    settings = _prepared(home, config)
    return SKIPPED_LATE if settings is None else work(settings)


def _pipeline(settings: Settings) -> str:
    from cellpulse.flows.pipeline import rop_flow

    result = rop_flow(settings)
    if result.rops is not None:
        scored = result.rops.scores.height
    else:
        scored = result.batch.score.rows if result.batch and result.batch.score else 0
    return f"ingested {result.ingest.rows_accepted} rows, {result.how}: scored {scored}"


def _features(settings: Settings) -> str:
    from cellpulse.flows.features import features_flow

    built = features_flow(settings, only_stale=True)
    return f"built {len(built.days)} days" if built else "nothing stale"


def _train(settings: Settings) -> str:
    from cellpulse.flows.train import train_flow

    trained = train_flow(settings)
    return ", ".join(f"{f} v{lg.version}" for f, lg in trained.logged.items())


def _monitor(settings: Settings) -> str:
    from cellpulse.flows.monitor import monitor_flow

    outcome = monitor_flow(settings)
    return f"{len(outcome.report.breached)} checks crossed, retrained={outcome.retrained}"


def _housekeeping(settings: Settings) -> str:
    from cellpulse.flows.housekeeping import housekeeping_flow

    outcome = housekeeping_flow(settings)
    compacted = sum(len(d) for d in outcome.compacted.values())
    removed = sum(len(d) for d in outcome.removed.values())
    freed = sum(outcome.before.values()) - sum(outcome.after.values())
    return f"compacted {compacted} days, removed {removed}, freed {freed / 1e6:,.0f} MB"


@flow(name="scheduled-pipeline", timeout_seconds=3600)
def scheduled_pipeline(home: str, config: str | None = None, manual: bool = False) -> str:
    """Ingest new files, then build, score and publish the ROPs after the newest published
    one (the daily stages, training a family without a champion, when there is no state)."""
    return _scheduled(home, config, _pipeline)


@flow(name="scheduled-features", timeout_seconds=3 * 3600)
def scheduled_features(home: str, config: str | None = None, manual: bool = False) -> str:
    """Rebuild the features of every day ingest marked stale."""
    return _scheduled(home, config, _features)


@flow(name="scheduled-train", timeout_seconds=6 * 3600)
def scheduled_train(home: str, config: str | None = None, manual: bool = False) -> str:
    """Retrain both model families; promotion rules decide whether the champion changes."""
    return _scheduled(home, config, _train)


@flow(name="scheduled-monitor", timeout_seconds=3600)
def scheduled_monitor(home: str, config: str | None = None, manual: bool = False) -> str:
    """Drift, availability, topology, score-shift and performance checks."""
    return _scheduled(home, config, _monitor)


@flow(name="scheduled-housekeeping", timeout_seconds=3 * 3600)
def scheduled_housekeeping(home: str, config: str | None = None, manual: bool = False) -> str:
    """Compact idle KPI days and remove days past each dataset's retention."""
    return _scheduled(home, config, _housekeeping)


def schedules(settings: Settings) -> dict[str, Schedule | None]:
    """Deployment name -> its schedule, from settings (what `serve` registers)."""
    tz = settings.schedules.timezone
    return {
        "every-rop": Interval(
            timedelta(minutes=settings.rop_minutes),
            # On the ROP grid, a few minutes after each period ends: :05, :20, :35, :50.
            anchor_date=datetime(2026, 1, 1, tzinfo=UTC)
            + timedelta(minutes=settings.schedules.rop_delay_minutes),
            timezone=tz,
        )
        if settings.schedules.every_rop
        else None,
        "features-daily": Cron(settings.schedules.features_cron, timezone=tz),
        "train-weekly": Cron(settings.schedules.train_cron, timezone=tz),
        "monitor-daily": Cron(settings.schedules.monitor_cron, timezone=tz),
        "housekeeping-daily": Cron(settings.housekeeping.cron, timezone=tz),
    }


FLOWS = {
    "every-rop": scheduled_pipeline,
    "features-daily": scheduled_features,
    "train-weekly": scheduled_train,
    "monitor-daily": scheduled_monitor,
    "housekeeping-daily": scheduled_housekeeping,
}


def build_deployments(settings: Settings, config: Path | None = None) -> list[Any]:
    """The deployments `cellpulse serve` registers, with their schedules; each run gets
    only the home and the config file's path as parameters (no secret is stored)."""
    parameters = {"home": str(settings.home), "config": str(config) if config else None}
    deployments = []
    for name, schedule in schedules(settings).items():
        deployments.append(
            FLOWS[name].to_deployment(
                name=name,
                schedule=schedule,
                parameters=parameters,
                concurrency_limit=ONE_AT_A_TIME,
                tags=["cellpulse"],
                description=(FLOWS[name].description or "").strip().splitlines()[0],
            )
        )
    return deployments


def ensure_training_limit() -> None:
    """Create the server's global concurrency limit that keeps trainings from overlapping
    (the weekly one, a pipeline training a first champion, a manual `cellpulse train`)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists

    from cellpulse.flows.train import TRAINING_LIMIT

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=TRAINING_LIMIT, limit=1)
        )
