"""End to end on one day of 100,000 cells: ingest the day's 24 hourly files, build its
features (7 days of lookback already in the lake), score it with both models, each phase
timed. Models are trained beforehand on 8 days of 1,000 cells (default settings, with the
simulator's labelled faults, so the anomaly model includes the fault classifier), which is
not part of the timing; training speed has its own row."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import polars as pl

from bench.common import Measurement, peak_rss_mb, record
from bench.ingest import NOW
from bench.scoring import table
from cellpulse import lake
from cellpulse.features.builder import build_features
from cellpulse.features.spec import FeatureParams, spec_for
from cellpulse.features.store import build_day, read_features
from cellpulse.ingest import ingest_files
from cellpulse.models.compiled import CompiledModels
from cellpulse.models.families import anomaly as anomaly_family
from cellpulse.models.families import congestion as congestion_family
from cellpulse.models.params import ModelParams
from cellpulse.settings import Settings
from cellpulse.simulator import (
    SimulationConfig,
    build_topology,
    draw_events,
    iter_days,
    split_into_files,
)
from cellpulse.window import DayWindow


def timed(fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(runs: int = 1) -> None:
    del runs  # one pass: each phase of a national day is long enough to time once
    cells = 100_000
    with tempfile.TemporaryDirectory(prefix="cellpulse-bench-") as tmp:
        settings = Settings(home=Path(tmp) / "home")
        params = FeatureParams.of(settings)
        spec = spec_for(params)
        small_cfg = SimulationConfig(cells=1_000, days=8, seed=2)
        topology = build_topology(small_cfg)
        events = draw_events(topology, small_cfg)
        small_kpis = pl.concat([d for _, d in iter_days(small_cfg, topology, events)])
        small = build_features(small_kpis, spec, rop_minutes=15, min_denominator=10)
        (anomaly, t_anomaly) = timed(
            lambda: (
                anomaly_family.train_anomaly(
                    small, events, ModelParams.of(settings), spec.hash()
                ).model
            )
        )
        (congestion, t_congestion) = timed(
            lambda: (
                congestion_family.train_congestion(
                    small, small_kpis, ModelParams.of(settings), spec.hash()
                ).model
            )
        )
        train_rows = small.height

        kpi = settings.layout.kpi
        landing = Path(tmp) / "landing"
        config = SimulationConfig(cells=cells, days=8, seed=1)
        for index, (day, frame) in enumerate(iter_days(config)):
            if index < config.days - 1:  # the lookback goes straight into the lake
                kpi.replace_day(frame, day)
                continue
            for name, part in split_into_files(frame, 60):  # the day arrives as files
                lake.atomic_write_parquet(part, landing / name)
            last, rows = day, frame.height
        del frame

        summary, t_ingest = timed(lambda: ingest_files([landing], settings, NOW))
        built, t_features = timed(lambda: build_day(settings.layout, spec, last, params))
        engine = CompiledModels(settings.layout.compiled, settings.train.n_jobs)
        table(small.head(100), anomaly, congestion, settings, engine.predict)  # compile, untimed
        # As the score flow does: the day's features read back from the lake, then scored.
        scores, t_score = timed(
            lambda: table(
                read_features(settings.layout, DayWindow(last, last), spec),
                anomaly,
                congestion,
                settings,
                engine.predict,
            )
        )
        peak = peak_rss_mb()
        total = t_ingest + t_features + t_score
        results = [
            Measurement(
                "train anomaly (10 regressors + fault classifier), 1,000 cells × 8 days",
                train_rows,
                [t_anomaly],
                0,
            ),
            Measurement("train congestion, 1,000 cells × 8 days", train_rows, [t_congestion], 0),
            Measurement(
                "ingest, 100,000 cells × 1 day (24 files)", summary.rows_accepted, [t_ingest], 0
            ),
            Measurement("features (build_day)", built.rows, [t_features], 0),
            Measurement("score (read the features, compiled models)", scores.height, [t_score], 0),
            Measurement(
                "end to end: ingest → features → score",
                rows,
                [total],
                peak,
                "goal: under 60 s",
            ),
        ]
    record(
        "End to end",
        "python -m bench.run e2e",
        results,
        "One pass (a national day is long enough to time once). Peak RSS is the whole "
        "benchmark process's, simulation included.",
    )


if __name__ == "__main__":
    main()
