"""Flow: the daily pipeline, ingest -> features -> train (only if there is no champion) ->
score. Each stage does only what is new or stale, so a second run with no new data does
nothing and changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import flow

from cellpulse.errors import NoChampionError
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


@flow(name="daily-pipeline")
def pipeline_flow(
    settings: Settings, paths: list[Path] | None = None, mapping: str | None = None
) -> PipelineResult:
    """Ingest `paths` (default: the landing folder), build the days that changed, train a
    first champion if a family has none, and score every day whose scores are stale."""
    tracking.configure(settings)
    ingested = ingest_flow(settings, paths, mapping=mapping)
    features = features_flow(settings, only_stale=True)
    trained = None
    if any(tracking.champion_version(f) is None for f in tracking.MODEL_NAMES):
        trained = train_flow(settings)
        for family, logged in trained.logged.items():
            if tracking.champion_version(family) is None:
                raise NoChampionError(
                    f"the first {family} model (version {logged.version}) was not promoted: "
                    f"{logged.decision.reason}; no scores published. Inspect the run in "
                    "MLflow, then promote it by hand or train on more data"
                )
    built = set(settings.layout.features.dates())
    days = [d for d in stale_days(settings, "scores") if d in built]
    scored = score_flow(settings, days) if days else None
    return PipelineResult(ingested, features, trained, scored)
