"""Scoring: features in, the score table out, with both champions. No MLflow here."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from cellpulse.errors import SpecMismatchError
from cellpulse.models.anomaly import AnomalyModel
from cellpulse.models.compiled import CompiledModels
from cellpulse.models.congestion import CongestionModel
from cellpulse.models.training import score_anomaly
from cellpulse.publish import ModelRef, assemble_scores
from cellpulse.settings import Settings

_ENGINES: dict[Path, CompiledModels] = {}


def scoring_engine(settings: Settings) -> CompiledModels | None:
    """The compiled-model engine when `score_engine` is "compiled" (one per home and
    process, so each model loads once), else None: LightGBM's own predict."""
    if settings.score_engine != "compiled":
        return None
    cache = settings.home / "compiled"
    if cache not in _ENGINES:
        _ENGINES[cache] = CompiledModels(cache, settings.train.n_jobs)
    return _ENGINES[cache]


def check_spec(model_spec: str, features_spec: str, what: str) -> None:
    if model_spec != features_spec:
        raise SpecMismatchError(
            f"the {what} champion was trained on feature spec {model_spec}, but the features "
            f"are spec {features_spec}; retrain (`cellpulse train`) or rebuild the features "
            "with the champion's spec"
        )


def score_features(
    features: pl.DataFrame,
    anomaly: AnomalyModel,
    congestion: CongestionModel,
    anomaly_ref: ModelRef,
    congestion_ref: ModelRef,
    settings: Settings,
    scored_at: datetime,
    spec_hash: str,
) -> pl.DataFrame:
    """The score table for every feature row, sorted by (cell_id, ts)."""
    check_spec(anomaly.spec_hash, spec_hash, "anomaly")
    check_spec(congestion.spec_hash, spec_hash, "congestion")
    feats = features.sort("cell_id", "ts")
    anomalies = score_anomaly(anomaly, feats, settings)
    prob = pl.Series("congestion_prob", congestion.predict(feats))
    return assemble_scores(
        feats, anomalies, prob, congestion.horizon, anomaly_ref, congestion_ref, scored_at
    )
