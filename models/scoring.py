"""Scoring: features in, the score table out, each family scored by its champion or its
baseline. No MLflow here."""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import polars as pl

from cellpulse.errors import SpecMismatchError
from cellpulse.lake import by_keys, key_ordered_segments
from cellpulse.lake.dataset import DaysWriter
from cellpulse.models.boosting import Predict, lightgbm_predict
from cellpulse.models.compiled import CompiledModels
from cellpulse.models.family import Baseline, ModelFamily, families, family, model_columns
from cellpulse.models.params import ModelParams
from cellpulse.publish import ModelRef, assemble_scores

_ENGINES: dict[Path, CompiledModels] = {}
ScoreEngine = Literal["lightgbm", "compiled"]  # as the `score_engine` setting names them


def scoring_engine(engine: ScoreEngine, cache: Path, n_jobs: int) -> CompiledModels | None:
    """The compiled-model engine when `engine` is "compiled" (one per compiled-model
    folder `cache`, `<home>/compiled`, and process, so each model loads once), else None:
    LightGBM's own predict."""
    if engine != "compiled":
        return None
    if cache not in _ENGINES:
        _ENGINES[cache] = CompiledModels(cache, n_jobs)
    return _ENGINES[cache]


def predictor(engine: ScoreEngine, cache: Path, n_jobs: int) -> Predict:
    """How boosters score under the `score_engine` setting `engine`: the compiled engine's
    `predict` (models compiled into `cache` with `n_jobs` threads), or LightGBM's own."""
    compiled = scoring_engine(engine, cache, n_jobs)
    return lightgbm_predict if compiled is None else compiled.predict


def check_spec(model_spec: str, features_spec: str, what: str) -> None:
    """Refuse to score features built by another spec than the `what` model was trained on:
    its columns would mean something else."""
    if model_spec != features_spec:
        raise SpecMismatchError(
            f"the {what} champion was trained on feature spec {model_spec}, but the features "
            f"are spec {features_spec}; retrain (`cellpulse train`) or rebuild the features "
            "with the champion's spec"
        )


@dataclass(frozen=True)
class Scorer:
    """What scores one family's columns of the score table, and how the table names it: a
    champion (`ref` its registry name, version and run) or the family's baseline (`ref`
    `baseline:<method>`, version "baseline", no run)."""

    family: ModelFamily
    ref: ModelRef
    model: Any = None  # a champion's model; None: `baseline` scores
    baseline: Baseline | None = None

    @property
    def is_baseline(self) -> bool:
        return self.model is None

    def columns(self, feats: pl.DataFrame, params: ModelParams, predict: Predict) -> pl.DataFrame:
        """The family's value columns for `feats` (sorted by cell_id, ts), plus the model's."""
        if self.model is not None:
            values = self.family.score(self.model, feats, params, predict)
        else:
            assert self.baseline is not None
            values = self.baseline.score(feats, params)
        name, version, run_id = model_columns(self.family.name)
        # One type per column whoever scores it: a day scored by a baseline and one scored
        # by a model must read as one dataset.
        return values.cast(dict(self.family.columns)).with_columns(
            pl.lit(self.ref.name).alias(name),
            pl.lit(self.ref.version).alias(version),
            pl.lit(self.ref.run_id).alias(run_id),
        )


def champion_scorer(family: ModelFamily, model: Any, ref: ModelRef) -> Scorer:
    return Scorer(family, ref, model=model)


def champion_scorers(models: dict[str, tuple[Any, ModelRef]]) -> list[Scorer]:
    """Scorers for trained models by family name: {family: (model, its registry ref)}."""
    return [champion_scorer(family(name), m, ref) for name, (m, ref) in models.items()]


def baseline_scorer(family: ModelFamily, baseline: Baseline) -> Scorer:
    return Scorer(family, ModelRef(baseline.name, BASELINE_VERSION, ""), baseline=baseline)


BASELINE_VERSION = "baseline"  # the model version a baseline's scores carry


def absent_columns(family: ModelFamily, rows: int) -> pl.DataFrame:
    """A family's columns for rows it does not score: nulls (is_anomaly: False, so alert
    rules read them as normal)."""
    out = pl.DataFrame(
        {
            c: pl.Series(c, [False] * rows if t == pl.Boolean() else [None] * rows, dtype=t)
            for c, t in family.columns.items()
        }
    )
    return out.with_columns(pl.lit(None, pl.String()).alias(c) for c in model_columns(family.name))


def score_features(
    features: pl.DataFrame,
    scorers: Sequence[Scorer],
    params: ModelParams,
    scored_at: datetime,
    spec_hash: str,
    predict: Predict = lightgbm_predict,
) -> pl.DataFrame:
    """The score table for every feature row, sorted by (cell_id, ts): each family's
    columns from its scorer, nulls for a family without one.

    Scored in chunks of whole cells of about `SCORE_CHUNK_ROWS` rows: the models' float64
    matrices and intermediate columns then take a bounded amount of memory, whatever the
    size of the network (a cell's rows stay together, so its alert runs are unbroken).

    Args:
        predict: how the boosters score: LightGBM's own, or the engine the `score_engine`
            setting names (`predictor`).
    """
    for s in scorers:
        if s.model is not None:
            check_spec(s.model.spec_hash, spec_hash, s.family.name)
    by_family = {s.family.name: s for s in scorers}
    every = families()
    # Sorting a national day's wide feature table is slow (bench/RESULTS.md); a day read region by
    # region is already sorted within each region, so each region is scored where it lies
    # and only the narrow score table is put in order at the end.
    segments = key_ordered_segments(features) or [features.sort("cell_id", "ts")]
    parts = []
    for segment in segments:
        for feats in cell_chunks(segment, SCORE_CHUNK_ROWS):
            columns = [
                by_family[f.name].columns(feats, params, predict)
                if f.name in by_family
                else absent_columns(f, feats.height)
                for f in every
            ]
            parts.append(assemble_scores(feats, columns, scored_at))
    table = pl.concat(parts)
    return table if len(segments) == 1 else table.sort("cell_id", "ts")


SCORE_CHUNK_ROWS = 250_000


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


def with_context(context: pl.DataFrame, features: pl.DataFrame) -> pl.DataFrame:
    """The feature rows of `context` (the ROPs just before `features`) and `features`,
    sorted by (cell_id, ts): the rows `score_rops` scores."""
    rows = (
        pl.concat([context.select(features.columns), features], how="vertical_relaxed")
        if context.height
        else features
    )
    return by_keys(rows)


def score_rops(
    context: pl.DataFrame,
    features: pl.DataFrame,
    scorers: Sequence[Scorer],
    params: ModelParams,
    scored_at: datetime,
    spec_hash: str,
    predict: Predict = lightgbm_predict,
) -> pl.DataFrame:
    """The score table of the feature rows of new ROPs (`features`), scored after the
    feature rows of the ROPs just before them (`context`, left out of the answer): the
    consecutive-ROP rule and the explanation of alerts look back on those, so the new rows
    score exactly as they do when their whole day is scored at once."""
    first = features["ts"].min()
    rows = with_context(context, features)
    table = score_features(rows, scorers, params, scored_at, spec_hash, predict)
    return table.filter(pl.col("ts") >= first)


class SharedPredictions:
    """A `Predict` that predicts each booster once per matrix: asked again for a matrix
    with the same bits (the anomaly band reads the same regressors on the same rows as the
    score before it), it answers with what it predicted. Only matrices that several
    boosters score (the anomaly regressors share one) are kept, so a chunk's other model
    matrices are freed as soon as they are scored; use one per chunk."""

    def __init__(self, predict: Predict) -> None:
        self._predict = predict
        # The newest matrix (weakly: it is kept only once a second booster scores it) and
        # the predictions made on it, by booster id.
        self._newest: tuple[weakref.ref[np.ndarray], dict[int, Prediction]] | None = None
        self._kept: list[tuple[np.ndarray, dict[int, Prediction]]] = []

    def __call__(self, booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
        for i, (seen, made) in enumerate(self._kept):
            known = made.get(id(booster))
            if known is not None and known[0] is booster and _same_bits(seen, x):
                self._kept[i] = (x, made)  # the next boosters find `x` by identity
                return known[1]
        y = self._predict(booster, x)
        if self._newest is not None and self._newest[0]() is x:
            made = self._newest[1]
            made[id(booster)] = (booster, y)
            if len(made) == 2:  # shared by boosters: worth keeping for the chunk
                self._kept.append((x, made))
        else:
            self._newest = (weakref.ref(x), {id(booster): (booster, y)})
        return y


Prediction = tuple[lgb.Booster, np.ndarray]


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two matrices hold the same values bit for bit (NaNs included)."""
    if a is b:
        return True
    if a.shape != b.shape or a.dtype != b.dtype or a.dtype.itemsize != 8:
        return False
    return bool(np.array_equal(a.view(np.int64), b.view(np.int64)))


def scored_chunks(
    chunks: Iterable[pl.DataFrame],
    context: pl.DataFrame,
    scorers: Sequence[Scorer],
    params: ModelParams,
    scored_at: datetime,
    spec_hash: str,
    days: list[date],
    predict: Predict = lightgbm_predict,
) -> Iterator[tuple[pl.DataFrame, pl.DataFrame | None]]:
    """Per chunk of `chunks` (whole cells, in ascending cell_id ranges:
    `features.store.feature_chunks`), its score table and the expected band a champion
    draws (None without one), both sorted by (cell_id, ts): the chunk scored after its
    cells' `context` (as `score_rops`), the band predicted on the same rows, so its
    regressors run once (`SharedPredictions`). Only rows of `days` are in the answer: the
    chunks' rows of other days are context for those after them. A chunk is dropped
    before the next is read, so memory follows the chunk, not the network."""
    in_days = pl.col("ts").dt.date().is_in(days)
    for feats in chunks:
        first, last = pl.lit(feats["cell_id"].min()), pl.lit(feats["cell_id"].max())
        own = (
            context.filter(pl.col("cell_id").is_between(first, last)) if context.height else context
        )
        scored = in_days & (pl.col("ts") >= feats["ts"].min())
        rows = with_context(own, feats)
        del feats
        tables, bands = [], []
        # Scored and banded piece by piece, as `score_features` cuts them, so that both
        # read the very same matrices.
        for piece in cell_chunks(rows, SCORE_CHUNK_ROWS):
            shared = SharedPredictions(predict)
            tables.append(score_features(piece, scorers, params, scored_at, spec_hash, shared))
            bands += [
                band.filter(scored)
                for s in scorers
                if s.model is not None
                and (band := s.family.band(s.model, piece, shared)) is not None
            ][:1]
            del shared
        del rows
        table = (tables[0] if len(tables) == 1 else pl.concat(tables)).filter(scored)
        yield table, (pl.concat(bands) if bands else None)
        del tables, bands, table


def score_chunks(
    chunks: Iterable[pl.DataFrame],
    context: pl.DataFrame,
    scorers: Sequence[Scorer],
    params: ModelParams,
    scored_at: datetime,
    spec_hash: str,
    days: list[date],
    predict: Predict = lightgbm_predict,
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """The score table of the feature rows of `days` and the expected band a champion draws
    (None without one), from `chunks` scored one at a time (`scored_chunks`): the same
    tables as scoring every chunk at once."""
    scores, bands = [], []
    for table, band in scored_chunks(
        chunks, context, scorers, params, scored_at, spec_hash, days, predict
    ):
        scores.append(table)
        if band is not None:
            bands.append(band)
    return pl.concat(scores), (pl.concat(bands) if bands else None)


def write_scored(
    scored: Iterable[tuple[pl.DataFrame, pl.DataFrame | None]],
    scores: DaysWriter,
    bands: DaysWriter,
) -> pl.DataFrame:
    """Each chunk of `scored` (`scored_chunks`) written as it comes: its score table to
    `scores`, its expected band (if a champion drew one) to `bands`; only the score table
    is kept, for the alerts and the ops store. The writers are committed once every chunk
    is in (`bands` only if a band came: without one the days keep theirs), or aborted on
    an error, the days keeping what they held.

    A chunk is written on a thread while the next one is scored (parquet encoding releases
    the GIL): at most one chunk waits to be written."""
    kept, banded = [], False

    def write(table: pl.DataFrame, band: pl.DataFrame | None) -> None:
        scores.write(table)
        if band is not None:
            bands.write(band)

    try:
        with ThreadPoolExecutor(1) as writer:
            pending: Future[None] | None = None
            for table, band in scored:
                if pending is not None:
                    pending.result()
                pending = writer.submit(write, table, band)
                banded |= band is not None
                kept.append(table)
                del band
            if pending is not None:
                pending.result()
    except BaseException:
        scores.abort()
        bands.abort()
        raise
    scores.commit()
    if banded:
        bands.commit()
    else:
        bands.abort()
    return pl.concat(kept)
