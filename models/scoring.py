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
    """The score table for every feature row, sorted by (cell_id, ts).

    Scored in chunks of whole cells of about `SCORE_CHUNK_ROWS` rows: the models' float64
    matrices and intermediate columns then take a bounded amount of memory, whatever the
    size of the network (a cell's rows stay together, so its alert runs are unbroken)."""
    check_spec(anomaly.spec_hash, spec_hash, "anomaly")
    check_spec(congestion.spec_hash, spec_hash, "congestion")
    parts = []
    ranges: list[tuple[str, str] | None] = list(cell_ranges(features, SCORE_CHUNK_ROWS))
    for bounds in ranges or [None]:  # an empty frame still gets the table's columns
        chunk = (
            features
            if bounds is None or len(ranges) == 1
            else features.filter(pl.col("cell_id").is_between(pl.lit(bounds[0]), pl.lit(bounds[1])))
        )
        feats = chunk.sort("cell_id", "ts")
        del chunk
        anomalies = score_anomaly(anomaly, feats, settings)
        prob = pl.Series("congestion_prob", congestion.predict(feats))
        parts.append(
            assemble_scores(
                feats, anomalies, prob, congestion.horizon, anomaly_ref, congestion_ref, scored_at
            )
        )
    return pl.concat(parts)


SCORE_CHUNK_ROWS = 1_000_000


def cell_ranges(features: pl.DataFrame, rows: int) -> list[tuple[str, str]]:
    """Consecutive cell_id ranges (inclusive) of about `rows` feature rows each."""
    counts = features.group_by("cell_id").len().sort("cell_id")
    ids, sizes = counts["cell_id"].to_list(), counts["len"].to_list()
    ranges, start, acc = [], 0, 0
    for i, size in enumerate(sizes):
        acc += size
        if acc >= rows or i == len(sizes) - 1:
            ranges.append((ids[start], ids[i]))
            start, acc = i + 1, 0
    return ranges
