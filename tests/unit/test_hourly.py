"""Hourly data flows through the whole pipeline as well as 15-minute data."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from cellpulse.features.spec import FeatureParams, default_spec
from cellpulse.features.store import build_day, ingested_days, read_features, record_built
from cellpulse.ingest import ingest_files
from cellpulse.models.families import anomaly as anomaly_family
from cellpulse.models.families import congestion as congestion_family
from cellpulse.models.params import ModelParams
from cellpulse.models.scoring import champion_scorers, score_features
from cellpulse.publish import ModelRef
from cellpulse.simulator import SimulationConfig, write_network
from cellpulse.window import DayWindow
from tests.conftest import tiny_settings

NOW = datetime(2026, 2, 1, tzinfo=UTC)


def test_hourly_rops_ingest_build_train_and_score(tmp_path):
    settings = tiny_settings(tmp_path / "home").model_copy(update={"rop_minutes": 60})
    cfg = SimulationConfig(cells=12, days=9, seed=3, rop_minutes=60, events_per_cell_day=0.05)
    sim = write_network(
        cfg, settings.layout.landing, settings.layout.ground_truth, settings.congestion
    )
    summary = ingest_files([settings.layout.landing], settings, NOW)
    assert summary.rows_accepted == 12 * 9 * 24 and summary.rows_quarantined == 0

    spec = default_spec(60)
    assert not [c for c in spec.columns() if c.endswith(("_lag_15m", "_mean_1h"))]
    days = ingested_days(settings.layout, DayWindow())
    params = FeatureParams.of(settings)
    layout = settings.layout
    built = record_built(layout, spec, [build_day(layout, spec, day, params) for day in days])
    assert built.rows == 12 * 9 * 24
    features = read_features(layout, DayWindow(), spec)
    kpis = settings.layout.kpi.read()
    anomaly = anomaly_family.train_anomaly(
        features, sim.events, ModelParams.of(settings), spec.hash()
    )
    congestion = congestion_family.train_congestion(
        features, kpis, ModelParams.of(settings), spec.hash()
    )
    ref = ModelRef("m", "1", "r")
    scores = score_features(
        features,
        champion_scorers({"anomaly": (anomaly.model, ref), "congestion": (congestion.model, ref)}),
        ModelParams.of(settings),
        NOW,
        spec.hash(),
    )
    assert scores.height == features.height
    assert scores["congestion_horizon"].unique().to_list() == ["1h"]
    assert scores["anomaly_score"].is_finite().all()


def test_quarter_hour_rows_are_refused_by_an_hourly_installation(tmp_path):
    settings = tiny_settings(tmp_path / "home").model_copy(update={"rop_minutes": 60})
    cfg = SimulationConfig(cells=3, days=1, seed=3)  # 15-minute ROPs
    write_network(cfg, settings.layout.landing, settings.layout.ground_truth, settings.congestion)
    summary = ingest_files([settings.layout.landing], settings, NOW)
    assert summary.rows_accepted == 3 * 24  # the full hours
    assert summary.rows_quarantined == 3 * 24 * 3
    report = next(settings.layout.quarantine.glob("*.report.txt")).read_text()
    assert "not aligned to the 60-minute ROP" in report
    assert pl.read_parquet(next(settings.layout.quarantine.glob("*.rows.parquet"))).height == 9
