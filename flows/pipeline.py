"""Flow: the daily pipeline, ingest -> features -> train (the families without a champion)
-> score. Each stage does only what is new or stale, so a second run with no new data does
nothing and changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger

from cellpulse.features.store import FeatureSummary
from cellpulse.flows.features import features_flow, stale_days
from cellpulse.flows.ingest import ingest_flow
from cellpulse.flows.score import ScoreSummary, score_flow
from cellpulse.flows.train import TrainResult, train_flow
from cellpulse.ingest import IngestSummary
from cellpulse.models import tracking
from cellpulse.settings import Settings


@dataclass(frozen=True)
class PipelineResult:
    """What each stage of a pipeline run did (None: the stage had nothing to do)."""

    ingest: IngestSummary
    features: FeatureSummary | None
    train: TrainResult | None
    score: ScoreSummary | None


def families_to_train(features_changed: bool) -> tuple[str, ...]:
    """The families the pipeline trains: those without a champion, once new features are in
    (or, for a family never trained, on the first run); each scores with its baseline
    meanwhile. A family with a champion is retrained by `cellpulse train` or a schedule."""
    return tuple(
        name
        for name in tracking.MODEL_NAMES
        if tracking.champion_version(name) is None
        and (features_changed or not tracking.list_versions(name))
    )


@flow(name="daily-pipeline")
def pipeline_flow(
    settings: Settings, paths: list[Path] | None = None, mapping: str | None = None
) -> PipelineResult:
    """Ingest `paths` (default: the landing folder), build the days that changed, train the
    families that have no champion yet, and score every day whose scores are stale: a
    family without a champion (not trained, or its model lost to its baseline) publishes
    its baseline's scores, marked as such."""
    tracking.configure(settings)
    ingested = ingest_flow(settings, paths, mapping=mapping)
    features = features_flow(settings, only_stale=True)
    wanted = families_to_train(features is not None)
    trained = train_flow(settings, only=wanted) if wanted else None
    built = set(settings.layout.features.dates())
    days = [d for d in stale_days(settings, "scores") if d in built]
    scored = score_flow(settings, days) if days else None
    get_run_logger().info(
        f"daily pipeline: {ingested.count('ingested')} files ingested; features "
        + (f"rebuilt for {len(features.days)} days" if features else "unchanged")
        + "; trained "
        + (", ".join(wanted) if wanted else "nothing (every family has a champion)")
        + f"; scored {len(days)} days"
    )
    return PipelineResult(ingested, features, trained, scored)
