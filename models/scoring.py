"""Scoring: features in, the score table out, with both champions. No MLflow here."""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from cellpulse.errors import SpecMismatchError
from cellpulse.lake import key_ordered_segments
from cellpulse.models.anomaly import AnomalyModel
from cellpulse.models.boosting import Predict, lightgbm_predict
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
    cache = settings.layout.compiled
    if cache not in _ENGINES:
        _ENGINES[cache] = CompiledModels(cache, settings.train.n_jobs)
    return _ENGINES[cache]


def predictor(settings: Settings) -> Predict:
    """How boosters score under `settings.score_engine`: the compiled engine's `predict`,
    or LightGBM's own."""
    engine = scoring_engine(settings)
    return lightgbm_predict if engine is None else engine.predict


def check_spec(model_spec: str, features_spec: str, what: str) -> None:
    """Refuse to score features built by another spec than the `what` model was trained on:
    its columns would mean something else."""
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
    predict: Predict | None = None,
) -> pl.DataFrame:
    """The score table for every feature row, sorted by (cell_id, ts).

    Scored in chunks of whole cells of about `SCORE_CHUNK_ROWS` rows: the models' float64
    matrices and intermediate columns then take a bounded amount of memory, whatever the
    size of the network (a cell's rows stay together, so its alert runs are unbroken).

    Args:
        predict: how the boosters score; None: the engine `settings.score_engine` names
            (`predictor`).
    """
    how = predictor(settings) if predict is None else predict
    check_spec(anomaly.spec_hash, spec_hash, "anomaly")
    check_spec(congestion.spec_hash, spec_hash, "congestion")
    # Sorting a national day's wide feature table is slow (bench/RESULTS.md); a day read region by
    # region is already sorted within each region, so each region is scored where it lies
    # and only the narrow score table is put in order at the end.
    segments = key_ordered_segments(features) or [features.sort("cell_id", "ts")]
    parts = []
    for segment in segments:
        for feats in cell_chunks(segment, SCORE_CHUNK_ROWS):
            anomalies = score_anomaly(anomaly, feats, settings, how)
            prob = pl.Series("congestion_prob", congestion.predict(feats, how))
            parts.append(
                assemble_scores(
                    feats,
                    anomalies,
                    prob,
                    congestion.horizon,
                    anomaly_ref,
                    congestion_ref,
                    scored_at,
                )
            )
    table = pl.concat(parts)
    return table if len(segments) == 1 else table.sort("cell_id", "ts")


SCORE_CHUNK_ROWS = 1_000_000


def cell_chunks(ordered: pl.DataFrame, rows: int) -> list[pl.DataFrame]:
    """Zero-copy slices of about `rows` rows of frames sorted by (cell_id, ts), each made of
    whole cells; one (empty) slice for an empty frame, so the result keeps its columns."""
    if ordered.height <= rows:
        return [ordered]
    cells = ordered["cell_id"]
    changed = (cells.slice(1) != cells.slice(0, ordered.height - 1)).to_numpy()
    starts = np.flatnonzero(changed) + 1  # first row of every cell but the first
    cuts = [0]
    for start in starts:
        if start - cuts[-1] >= rows:
            cuts.append(int(start))
    cuts.append(ordered.height)
    return [ordered.slice(lo, hi - lo) for lo, hi in itertools.pairwise(cuts)]
