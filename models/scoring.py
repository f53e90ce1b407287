"""Scoring: features in, the score table out, with both champions. No MLflow here."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from cellpulse.errors import SpecMismatchError
from cellpulse.models.anomaly import AnomalyModel
from cellpulse.models.congestion import CongestionModel
from cellpulse.models.training import score_anomaly
from cellpulse.publish import ModelRef, assemble_scores
from cellpulse.settings import Settings


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
