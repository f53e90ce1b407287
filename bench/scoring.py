"""Scoring speed: LightGBM's own predict against the same models compiled to native code
(treelite/tl2cgen + gcc), per model and for the whole score table, on one day of 10,000
cells (960,000 feature rows). Models are trained with the default settings (100 trees, 31
leaves) on 8 days of 1,000 cells with the simulator's labelled faults (so the anomaly model
includes the supervised fault classifier)."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from bench.common import Measurement, peak_rss_mb, record, repeat
from cellpulse.features.builder import build_features
from cellpulse.features.spec import default_spec
from cellpulse.models.anomaly import AnomalyModel
from cellpulse.models.boosting import Predict, lightgbm_predict, matrix
from cellpulse.models.compiled import CompiledModels
from cellpulse.models.congestion import CongestionModel
from cellpulse.models.families import anomaly as anomaly_family
from cellpulse.models.families import congestion as congestion_family
from cellpulse.models.params import ModelParams
from cellpulse.models.scoring import champion_scorers, score_features
from cellpulse.models.supervised import classifier_inputs
from cellpulse.publish import ModelRef
from cellpulse.settings import Settings
from cellpulse.simulator import SimulationConfig, build_topology, draw_events, iter_days


def table(
    features: pl.DataFrame,
    anomaly: AnomalyModel,
    congestion: CongestionModel,
    settings: Settings,
    predict: Predict = lightgbm_predict,
) -> pl.DataFrame:
    """The score table of `features` with these models (placeholder registry references)."""
    return score_features(
        features,
        champion_scorers(
            {
                "anomaly": (anomaly, ModelRef("anomaly", "1", "-")),
                "congestion": (congestion, ModelRef("congestion", "1", "-")),
            }
        ),
        ModelParams.of(settings),
        datetime.now(UTC),
        anomaly.spec_hash,
        predict,
    )


def main(runs: int = 3) -> None:
    spec = default_spec(15)
    with tempfile.TemporaryDirectory(prefix="cellpulse-bench-") as tmp:
        settings = Settings(home=Path(tmp) / "home")
        small_cfg = SimulationConfig(cells=1_000, days=8, seed=2)
        topology = build_topology(small_cfg)
        events = draw_events(topology, small_cfg)
        small = pl.concat([d for _, d in iter_days(small_cfg, topology, events)])
        feats_small = build_features(small, spec, rop_minutes=15, min_denominator=10)
        anomaly = anomaly_family.train_anomaly(
            feats_small, events, ModelParams.of(settings), spec.hash()
        ).model
        assert anomaly.classifier is not None
        congestion = congestion_family.train_congestion(
            feats_small, small, ModelParams.of(settings), spec.hash()
        ).model
        big = pl.concat([d for _, d in iter_days(SimulationConfig(cells=10_000, days=8, seed=1))])
        last = big["ts"].max().date()  # type: ignore[union-attr]
        features = build_features(
            big,
            spec,
            rop_minutes=15,
            min_denominator=10,
            since=datetime(last.year, last.month, last.day, tzinfo=UTC),
        )
        del big
        engine = CompiledModels(Path(tmp) / "compiled", settings.train.n_jobs)
        x_congestion = matrix(features, congestion.feature_names)
        x_anomaly = matrix(features, anomaly.feature_names)
        x_fault = matrix(
            classifier_inputs(features, anomaly.zscores(features)),
            anomaly.classifier.feature_names,
        )
        regressor = anomaly.boosters["dl_volume_mbit"]
        results: list[Measurement] = []
        for label, booster, x in (
            ("congestion classifier", congestion.booster, x_congestion),
            ("fault classifier", anomaly.classifier.booster, x_fault),
            ("anomaly regressor (dl_volume_mbit)", regressor, x_anomaly),
        ):
            # A fresh copy of the matrix for every run: the compiled engine's own copy of
            # its input (made once per matrix) is part of one model's cost.
            fresh: dict[str, np.ndarray] = {}

            def copy(m: np.ndarray = x, into: dict[str, np.ndarray] = fresh) -> None:
                into["x"] = m.copy()

            def run(
                b: object = booster,
                into: dict[str, np.ndarray] = fresh,
                how: Predict = lightgbm_predict,
            ) -> int:
                return how(b, into["x"]).size  # type: ignore[arg-type]

            def run_compiled(b: object = booster, into: dict[str, np.ndarray] = fresh) -> int:
                return run(b, into, engine.predict)

            rows, plain = repeat(run, runs, copy)
            engine.predict(booster, x[:10])  # compile once, outside the timing
            rows, fast = repeat(run_compiled, runs, copy)
            same = np.array_equal(engine.predict(booster, x), np.asarray(booster.predict(x)))
            lgb_m = Measurement(f"{label}: LightGBM predict", rows, plain, peak_rss_mb())
            results += [
                lgb_m,
                Measurement(
                    f"{label}: compiled",
                    rows,
                    fast,
                    peak_rss_mb(),
                    f"{lgb_m.median_s / (sorted(fast)[len(fast) // 2]):.1f}x LightGBM; "
                    f"identical outputs: {same}",
                ),
            ]

        def score_table() -> int:
            return table(features, anomaly, congestion, settings).height

        def score_table_compiled() -> int:
            return table(features, anomaly, congestion, settings, engine.predict).height

        rows, plain = repeat(score_table, runs)
        rows, fast = repeat(score_table_compiled, runs)
        n_models = len(anomaly.boosters) + 1 + (anomaly.classifier is not None)
        results += [
            Measurement(f"score table ({n_models} models): LightGBM", rows, plain, peak_rss_mb()),
            Measurement(f"score table ({n_models} models): compiled", rows, fast, peak_rss_mb()),
        ]
    record(
        "Scoring",
        "python -m bench.run scoring",
        results,
        "Rows are feature rows (one cell at one ROP). Per-model rows/s is one booster's "
        "predict on the whole matrix; the score table runs every anomaly regressor, the "
        "congestion classifier, the fault classifier, residual standardisation, driver KPIs "
        "(contributions for the alerts the fault classifier raises) and alert flags. "
        "Goal: >= 1 M rows/s per model. `score_engine: compiled` turns compiled scoring on.",
    )


if __name__ == "__main__":
    main()
