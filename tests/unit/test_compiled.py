"""Compiled scoring gives exactly LightGBM's numbers, for the regressors and the classifier."""

from __future__ import annotations

import numpy as np
import pytest

from cellpulse.features.builder import build_features
from cellpulse.features.spec import default_spec
from cellpulse.models.compiled import CompiledModels
from cellpulse.models.families import anomaly as anomaly_family
from cellpulse.models.families import congestion as congestion_family
from cellpulse.models.params import ModelParams
from tests.conftest import tiny_settings

SPEC = default_spec(15)
pytest.importorskip("tl2cgen")


@pytest.fixture(scope="module")
def trained(tiny_network, tmp_path_factory):
    features = build_features(tiny_network[2], SPEC, rop_minutes=15, min_denominator=10)
    settings = tiny_settings(tmp_path_factory.mktemp("home"))
    anomaly = anomaly_family.train_anomaly(
        features, tiny_network[1], ModelParams.of(settings), SPEC.hash()
    )
    congestion = congestion_family.train_congestion(
        features, tiny_network[2], ModelParams.of(settings), SPEC.hash()
    )
    return anomaly, congestion, settings


def test_compiled_models_score_exactly_like_lightgbm(trained, tmp_path):
    anomaly, congestion, settings = trained
    holdout = anomaly.split.holdout
    plain_scores = anomaly_family.score_anomaly(anomaly.model, holdout, ModelParams.of(settings))
    plain_prob = congestion.model.predict(congestion.split.holdout)
    engine = CompiledModels(tmp_path / "compiled")
    fast_scores = anomaly_family.score_anomaly(
        anomaly.model, holdout, ModelParams.of(settings), engine.predict
    )
    fast_prob = congestion.model.predict(congestion.split.holdout, engine.predict)
    assert engine.failed is None
    libraries = sorted((tmp_path / "compiled").glob("*.so"))
    assert len(libraries) == len(anomaly.model.boosters) + 1  # every booster compiled once
    assert fast_scores.equals(plain_scores)
    assert np.array_equal(fast_prob, plain_prob)
    assert ((fast_prob > 0) & (fast_prob < 1)).all()  # the sigmoid is applied, as LightGBM does

    # A second engine (another process, say) loads the cached libraries instead of compiling.
    mtimes = [f.stat().st_mtime_ns for f in libraries]
    again = CompiledModels(tmp_path / "compiled")
    assert np.array_equal(
        congestion.model.predict(congestion.split.holdout, again.predict), plain_prob
    )
    assert [f.stat().st_mtime_ns for f in libraries] == mtimes


def test_without_a_compiler_scoring_falls_back_to_lightgbm(trained, tmp_path, monkeypatch):
    _, congestion, _ = trained
    monkeypatch.setenv("CC", "/nonexistent/cc")
    engine = CompiledModels(tmp_path / "compiled")
    prob = congestion.model.predict(congestion.split.holdout, engine.predict)
    assert engine.failed is not None
    assert np.array_equal(prob, congestion.model.predict(congestion.split.holdout))
    assert not list((tmp_path / "compiled").glob("*.so"))


def test_scoring_in_chunks_of_cells_equals_scoring_at_once(trained, monkeypatch):
    """A national day is scored in chunks of whole cells to bound memory; the table must be
    the one a single pass gives (alert runs included)."""

    from cellpulse.models import scoring

    anomaly, _, settings = trained
    holdout = anomaly.split.holdout.sample(fraction=1.0, shuffle=True, seed=1)

    def table(features=holdout):
        return score_table(features, trained, settings)

    whole = table()
    monkeypatch.setattr(scoring, "SCORE_CHUNK_ROWS", 500)
    chunks = scoring.cell_chunks(holdout.sort("cell_id", "ts"), 500)
    assert len(chunks) > 3
    # Whole cells per chunk, no cell in two chunks, every row once.
    cells = [set(c["cell_id"].unique()) for c in chunks]
    assert sum(len(c) for c in cells) == len(set().union(*cells))
    assert sum(c.height for c in chunks) == holdout.height
    chunked = table()
    assert chunked.equals(whole)
    # Rows in any order score the same (sorted once, then sliced).
    shuffled = holdout.sample(fraction=1.0, shuffle=True, seed=4)
    assert table(shuffled).equals(whole)
    assert whole["is_anomaly"].sum() > 0


def test_compiled_supervised_scores_exactly_like_lightgbm(labelled_network, tmp_path):
    events, features = labelled_network
    settings = tiny_settings(tmp_path / "home")
    anomaly = anomaly_family.train_anomaly(features, events, ModelParams.of(settings), SPEC.hash())
    assert anomaly.model.classifier is not None
    holdout = anomaly.split.holdout
    plain = anomaly_family.score_anomaly(anomaly.model, holdout, ModelParams.of(settings))
    fast = anomaly_family.score_anomaly(
        anomaly.model,
        holdout,
        ModelParams.of(settings),
        CompiledModels(tmp_path / "compiled").predict,
    )
    assert fast.equals(plain)


def test_the_score_engine_setting_chooses_how_the_score_table_is_scored(trained, tmp_path):
    """No switch around the call: `score_engine: compiled` in the settings compiles every
    booster the table uses, and the table is LightGBM's; the expected band takes the
    predictor as an argument."""

    from cellpulse.models import scoring

    anomaly, _, settings = trained
    holdout = anomaly.split.holdout
    compiled = settings.model_copy(update={"home": tmp_path, "score_engine": "compiled"})

    def engine(s):
        return scoring.predictor(s.score_engine, s.layout.compiled, s.train.n_jobs)

    def table(with_settings):
        return score_table(holdout, trained, with_settings, engine(with_settings))

    plain = table(settings)
    assert not (settings.layout.compiled).exists()
    assert table(compiled).equals(plain)
    assert len(list((tmp_path / "compiled").glob("*.so"))) == len(anomaly.model.boosters) + 1
    band = anomaly.model.band(holdout, predict=engine(compiled))
    assert band.equals(anomaly.model.band(holdout))


def score_table(features, trained, settings, predict=None):
    """The score table of `features` with the trained champions (placeholder registry refs)."""
    from datetime import UTC, datetime

    from cellpulse.models import scoring
    from cellpulse.models.boosting import lightgbm_predict
    from cellpulse.publish import ModelRef

    anomaly, congestion, _ = trained
    return scoring.score_features(
        features,
        scoring.champion_scorers(
            {
                "anomaly": (anomaly.model, ModelRef("a", "1", "r")),
                "congestion": (congestion.model, ModelRef("c", "1", "r")),
            }
        ),
        ModelParams.of(settings),
        datetime(2026, 1, 1, tzinfo=UTC),
        SPEC.hash(),
        predict or lightgbm_predict,
    )


def test_a_day_scored_in_chunks_read_from_the_lake_writes_the_same_bytes(
    trained, tiny_network, tmp_path
):
    """The score flow reads the days' features in chunks of whole cells and scores them one
    at a time (memory follows the chunk, not the network): the scores and expected bands
    it writes are byte for byte those of reading and scoring the whole window at once."""
    from datetime import UTC, datetime, time, timedelta

    import polars as pl

    from cellpulse.features.store import (
        SPEC_HASH_KEY,
        feature_chunks,
        read_features,
        read_features_since,
    )
    from cellpulse.models import scoring
    from cellpulse.models.family import family
    from cellpulse.publish import ModelRef
    from cellpulse.settings import Settings
    from cellpulse.window import DayWindow

    anomaly, _, settings = trained
    features = build_features(tiny_network[2], SPEC, rop_minutes=15, min_denominator=10)
    layout = Settings(home=tmp_path / "home").layout
    with_day = features.with_columns(pl.col("ts").dt.date().alias("_day"))
    days = sorted(with_day["_day"].unique())[-3:]
    for day in days:
        rows = with_day.filter(pl.col("_day") == day).drop("_day")
        layout.features.replace_day(rows, day, {SPEC_HASH_KEY: SPEC.hash()})
    scored_days, window = days[1:], DayWindow(days[1], days[-1])
    params = ModelParams.of(settings)
    reference = read_features(layout, DayWindow(days[0], days[0]), SPEC)
    # The anomaly champion (and its band) and the congestion baseline: both kinds of scorer.
    congestion = family("congestion")
    scorers = [
        *scoring.champion_scorers({"anomaly": (anomaly.model, ModelRef("a", "1", "r"))}),
        scoring.baseline_scorer(congestion, congestion.baseline(reference, params)),
    ]
    start = datetime.combine(days[1], time(), tzinfo=UTC)
    context = read_features_since(layout, SPEC, start - timedelta(minutes=15 * 4), start)
    at = datetime(2026, 1, 1, tzinfo=UTC)

    # Scoring the window whole, as the score flow did.
    whole = read_features(layout, window, SPEC)
    in_days = pl.col("ts").dt.date().is_in(scored_days)
    want_scores = scoring.score_rops(context, whole, scorers, params, at, SPEC.hash()).filter(
        in_days
    )
    want_band = anomaly.model.band(whole.filter(in_days))

    chunks = list(feature_chunks(layout, window, SPEC, 300))
    assert len(chunks) > 3 and sum(c.height for c in chunks) == whole.height
    cells = [set(c["cell_id"].unique()) for c in chunks]
    assert sum(len(c) for c in cells) == len(set().union(*cells))  # whole cells
    got_scores, got_band = scoring.score_chunks(
        iter(chunks), context, scorers, params, at, SPEC.hash(), scored_days
    )
    assert got_band is not None and got_scores.equals(want_scores)
    assert want_scores["is_anomaly"].sum() > 0

    def written(home: str, scores: pl.DataFrame, band: pl.DataFrame) -> list[bytes]:
        lake = Settings(home=tmp_path / home).layout
        out = []
        for ds, table in ((lake.scores, scores), (lake.expected, band)):
            for day in scored_days:
                paths = ds.replace_day(table.filter(pl.col("ts").dt.date() == day), day)
                out += [p.read_bytes() for p in sorted(paths)]
        return out

    assert written("chunked", got_scores, got_band) == written("whole", want_scores, want_band)


def test_scores_and_bands_written_chunk_by_chunk_equal_the_whole_day_and_hold_one_chunk(
    trained, tiny_network, tmp_path
):
    """The score flow writes each chunk's scores and expected bands as they come: the lake
    then reads exactly as when the whole window's tables are written at once, and no more
    than one chunk of features is alive at a time (a source that counts the live ones)."""
    import gc
    import weakref
    from datetime import UTC, datetime

    import polars as pl

    from cellpulse.features.store import SPEC_HASH_KEY, feature_chunks, read_features
    from cellpulse.models import scoring
    from cellpulse.publish import ModelRef
    from cellpulse.settings import Settings
    from cellpulse.window import DayWindow

    anomaly, congestion, settings = trained
    features = build_features(tiny_network[2], SPEC, rop_minutes=15, min_denominator=10)
    source = Settings(home=tmp_path / "home").layout
    with_day = features.with_columns(pl.col("ts").dt.date().alias("_day"))
    days = sorted(with_day["_day"].unique())[-2:]
    for day in days:
        rows = with_day.filter(pl.col("_day") == day).drop("_day")
        source.features.replace_day(rows, day, {SPEC_HASH_KEY: SPEC.hash()})
    window, params = DayWindow(days[0], days[-1]), ModelParams.of(settings)
    scorers = scoring.champion_scorers(
        {
            "anomaly": (anomaly.model, ModelRef("a", "1", "r")),
            "congestion": (congestion.model, ModelRef("c", "1", "r")),
        }
    )
    at = datetime(2026, 1, 1, tzinfo=UTC)
    whole = read_features(source, window, SPEC)
    want_scores = scoring.score_features(whole, scorers, params, at, SPEC.hash())
    want_band = anomaly.model.band(whole)

    alive: list[weakref.ref[pl.DataFrame]] = []
    most_alive = 0

    def counted(chunks):
        nonlocal most_alive
        for chunk in chunks:
            gc.collect()
            most_alive = max(most_alive, sum(r() is not None for r in alive) + 1)
            alive.append(weakref.ref(chunk))
            yield chunk

    chunked = Settings(home=tmp_path / "chunked").layout
    scored = scoring.scored_chunks(
        counted(feature_chunks(source, window, SPEC, 300)),
        pl.DataFrame(),
        scorers,
        params,
        at,
        SPEC.hash(),
        days,
    )
    kept = scoring.write_scored(
        scored, chunked.scores.days_writer(days), chunked.expected.days_writer(days)
    )
    assert len(alive) > 3 and most_alive == 1
    assert kept.equals(want_scores)

    at_once = Settings(home=tmp_path / "whole").layout
    for ds, table in ((at_once.scores, want_scores), (at_once.expected, want_band)):
        for day in days:
            ds.replace_day(table.filter(pl.col("ts").dt.date() == day), day)
    for got, want in ((chunked.scores, at_once.scores), (chunked.expected, at_once.expected)):
        for day in days:
            assert got.regions(day) == want.regions(day)
            for region in want.regions(day):
                assert got.read_days([day], region).equals(want.read_days([day], region))
    assert want_scores["is_anomaly"].sum() > 0
