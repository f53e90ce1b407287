"""Any operator's data: networks that deliver only some contract measurements, at 15- and
60-minute ROPs, through features, the anomaly model and the congestion rule."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

import numpy as np
import polars as pl
import pytest

from cellpulse import contract
from cellpulse.errors import CellpulseError, NoDataError
from cellpulse.features.builder import build_features, feature_coverage
from cellpulse.features.spec import default_spec
from cellpulse.features.targets import apply_rule, congestion_flags
from cellpulse.models.anomaly import (
    CONGESTION,
    FROZEN,
    NO_TRAFFIC,
    TARGETS,
    AnomalyModel,
    AnomalyParams,
)
from cellpulse.models.families import anomaly as anomaly_family
from cellpulse.models.families import congestion as congestion_family
from cellpulse.models.params import ModelParams
from cellpulse.settings import CongestionRule, load_settings
from cellpulse.simulator import (
    EVENT_SCHEMA,
    KPI_PRESETS,
    SimulationConfig,
    build_topology,
    iter_days,
    make_event,
)
from tests.conftest import START, tiny_settings

PRESETS = ("all", "prb_volume", "volume_users")
STUCK_CELL = 5
STUCK_START = datetime(START.year, START.month, START.day + 7, 10, tzinfo=UTC)
PARAMS = AnomalyParams(num_trees=10, n_jobs=1, min_data_in_leaf=20)


@cache
def network(preset: str, rop_minutes: int) -> pl.DataFrame:
    """KPIs of a 24-cell, 9-day network delivering `preset`, with counters stuck on one
    cell for six hours on day 8."""
    kpis = None if preset == "all" else KPI_PRESETS[preset]
    cfg = SimulationConfig(
        cells=24, days=9, start=START, seed=13, rop_minutes=rop_minutes, kpis=kpis
    )
    topo = build_topology(cfg)
    events = pl.DataFrame(
        [make_event(topo, STUCK_CELL, "stuck_counters", STUCK_START, 6.0)], schema=EVENT_SCHEMA
    )
    return pl.concat([day for _, day in iter_days(cfg, topo, events)])


@cache
def features(preset: str, rop_minutes: int) -> pl.DataFrame:
    return build_features(
        network(preset, rop_minutes),
        default_spec(rop_minutes),
        rop_minutes=rop_minutes,
        min_denominator=10,
    )


def delivered_kpis(preset: str) -> set[str]:
    measured = contract.MEASUREMENT_NAMES if preset == "all" else KPI_PRESETS[preset]
    return set(contract.available_kpis(measured))


@pytest.mark.parametrize("rop_minutes", [15, 60])
@pytest.mark.parametrize("preset", PRESETS)
def test_features_come_only_from_the_kpis_the_data_holds(preset, rop_minutes):
    spec = default_spec(rop_minutes)
    feats = features(preset, rop_minutes)
    have = delivered_kpis(preset)
    by_kpi = spec.columns_by_kpi()
    for kpi, columns in by_kpi.items():
        if kpi in have:
            assert set(columns) <= set(feats.columns), kpi
        else:
            assert not set(columns) & set(feats.columns), kpi
    coverage = feature_coverage(feats, spec)
    assert set(coverage.absent_kpis) == set(by_kpi) - have
    assert coverage.columns == feats.width - 6  # keys and dimensions are not features
    assert coverage.columns + len(coverage.left_out) == len(spec.columns())
    # Nine days of history: week-old lags exist, three-week baselines partly; every
    # column without a single value is named.
    nulls = {c for c in feats.columns if feats[c].null_count() == feats.height}
    assert set(coverage.all_null) == nulls
    line = coverage.line()
    assert line.startswith(f"features: {coverage.columns} columns")
    if preset != "all":
        assert "left out for absent KPIs" in line
        assert "availability_pct" in coverage.absent_kpis  # no unavail_s, no availability


def test_an_all_null_measurement_is_reported_and_a_restricted_spec_leaves_it_out():
    """A source that does not deliver a KPI gives the lake a column of nulls: the features
    built from it are named all-null; the spec restricted to what is delivered drops them,
    and on full data it is the shipped spec, hash and all."""
    kpis = network("all", 60).with_columns(pl.lit(None, pl.Float64).alias("dl_ue_thp_mbps"))
    spec = default_spec(60)
    built = build_features(kpis, spec, rop_minutes=60, min_denominator=10)
    coverage = feature_coverage(built, spec)
    assert "dl_ue_thp_mbps" in coverage.all_null_kpis
    assert "dl_ue_thp_mbps_mean_24h" in coverage.all_null

    delivered = contract.delivered(kpis)
    assert "dl_ue_thp_mbps" not in delivered
    restricted = spec.restricted_to(contract.available_kpis(delivered))
    feats = build_features(kpis, restricted, rop_minutes=60, min_denominator=10)
    assert not [c for c in feats.columns if c.startswith("dl_ue_thp_mbps")]
    assert spec.restricted_to(contract.available_kpis(contract.MEASUREMENT_NAMES)) is spec


def test_derived_kpis_exist_only_with_their_counters():
    frame = pl.DataFrame({"ho_att": [20.0], "ho_succ": [19.0], "rrc_estab_att": [30.0]})
    derived = frame.with_columns(contract.derived_kpis(10, 15, frame.columns))
    assert derived.columns == [*frame.columns, "ho_sr_pct"]
    assert derived["ho_sr_pct"][0] == pytest.approx(95.0)
    assert contract.derivable(["unavail_s"]) == ("availability_pct",)


WATCHED = {
    "all": tuple(t.name for t in TARGETS),
    "prb_volume": ("dl_volume_mbit",),
    "volume_users": ("dl_volume_mbit", "rrc_conn_mean"),
}
FROZEN_ON = {
    "all": ("dl_volume_mbit", "rrc_conn_mean", "prb_util_dl_pct"),
    "prb_volume": ("dl_volume_mbit", "prb_util_dl_pct"),
    "volume_users": ("dl_volume_mbit", "rrc_conn_mean"),
}


@pytest.mark.parametrize("rop_minutes", [15, 60])
@pytest.mark.parametrize("preset", PRESETS)
def test_the_anomaly_model_watches_the_kpis_it_has_and_catches_frozen_counters(preset, rop_minutes):
    feats = features(preset, rop_minutes)
    model = AnomalyModel.fit(feats, "h", PARAMS)
    assert model.watched == WATCHED[preset]
    assert model.frozen_kpis == FROZEN_ON[preset]
    assert set(model.left_out) == {t.name for t in TARGETS} - set(WATCHED[preset])
    assert all(why == "not delivered" for why in model.left_out.values()) or preset == "all"
    assert model.coverage_line().startswith(f"anomaly model watches {WATCHED[preset][0]}")

    z = model.zscores(feats)
    # Every preset has volume (no_traffic); only with PRB and a load-sensitive KPI can load
    # explain a KPI (congestion).
    explained = {CONGESTION} if preset == "all" else set()
    assert set(z.columns) == {*WATCHED[preset], FROZEN, NO_TRAFFIC, *explained}
    stuck = (
        (feats["cell_id"] == feats["cell_id"].unique().sort()[STUCK_CELL])
        & (feats["ts"] >= STUCK_START)
        & (feats["ts"] < STUCK_START + (STUCK_START - STUCK_START.replace(hour=4)))
    ).to_numpy()
    # Three repeated ROPs in, the frozen run scores; nowhere else does it.
    assert z[FROZEN].to_numpy()[stuck].max() >= 3
    assert z[FROZEN].to_numpy()[~stuck].max() == 0
    score = model.score(feats)["anomaly_score"].to_numpy()
    assert np.isfinite(score).all()


def test_a_sparse_kpi_is_left_out_with_the_reason_and_no_kpi_at_all_is_an_error():
    feats = features("volume_users", 60)
    sparse = feats.with_columns(
        pl.when(pl.int_range(pl.len()) % 10 == 0)
        .then(pl.col("rrc_conn_mean"))
        .alias("rrc_conn_mean")
    )
    model = AnomalyModel.fit(sparse, "h", PARAMS)
    assert model.watched == ("dl_volume_mbit",)
    assert "train.min_kpi_coverage is 25%" in model.left_out["rrc_conn_mean"]
    assert model.frozen_kpis == ("dl_volume_mbit",)

    empty = sparse.with_columns(pl.lit(None, pl.Float32).alias("dl_volume_mbit"))
    with pytest.raises(NoDataError, match=r"no KPI to watch: .*dl_volume_mbit no value"):
        AnomalyModel.fit(empty, "h", PARAMS)


def test_train_anomaly_says_which_kpis_it_watches(tmp_path):
    settings = tiny_settings(tmp_path)
    candidate = anomaly_family.train_anomaly(
        features("prb_volume", 60), None, ModelParams.of(settings), "h"
    )
    assert candidate.params["watched_kpis"] == "dl_volume_mbit"
    assert "rrc_conn_mean: not delivered" in candidate.params["kpis_left_out"]
    assert candidate.coverage.startswith("anomaly model watches dl_volume_mbit")


PRB_ONLY = CongestionRule(thp_floor_mbps=None, min_active_ue=None)


def test_a_prb_only_rule_flags_runs_of_high_prb_utilisation():
    kpis = network("prb_volume", 15)
    flags = congestion_flags(kpis, PRB_ONLY, 15)
    high = kpis.sort("cell_id", "ts")["prb_util_dl_pct"].fill_null(0) >= 80
    assert flags["congestion_raw"].to_list() == high.to_list()
    assert flags["congested"].sum() > 0
    # Runs of at least three: every congested ROP is a high one, not every high one counts.
    assert (flags["congested"] & ~flags["congestion_raw"]).sum() == 0
    assert flags["congested"].sum() <= flags["congestion_raw"].sum()
    applied = apply_rule(PRB_ONLY, kpis.columns)
    assert applied.switched_off == ("thp_floor_mbps", "min_active_ue")


def test_the_default_rule_leaves_out_conditions_whose_kpi_is_absent():
    kpis = network("prb_volume", 60)
    applied = apply_rule(CongestionRule(), kpis.columns)
    assert applied.kpis == ["prb_util_dl_pct"]
    assert applied.left_out == {
        "thp_floor_mbps": "dl_ue_thp_mbps",
        "min_active_ue": "active_ue_dl_mean",
    }
    assert "left out for absent KPIs: dl_ue_thp_mbps (congestion.thp_floor_mbps)" in (
        applied.describe()
    )
    # The same as the PRB-only rule, and on the full network it is the full rule.
    assert congestion_flags(kpis, CongestionRule(), 60).equals(congestion_flags(kpis, PRB_ONLY, 60))
    full = network("all", 60)
    assert apply_rule(CongestionRule(), full.columns).kpis == [
        "prb_util_dl_pct",
        "dl_ue_thp_mbps",
        "active_ue_dl_mean",
    ]


def test_no_congestion_condition_left_names_the_missing_kpis_and_settings():
    kpis = network("volume_users", 60)
    with pytest.raises(NoDataError) as err:
        congestion_flags(kpis, CongestionRule(), 60)
    message = str(err.value)
    assert "prb_util_dl_pct (congestion.prb_util_min_pct)" in message
    assert "dl_ue_thp_mbps (congestion.thp_floor_mbps)" in message
    assert "\n" not in message
    # A column of nulls is a KPI the source does not deliver.
    nulls = network("all", 60).with_columns(
        pl.lit(None, pl.Float64).alias(c) for c in ("prb_util_dl_pct", "dl_ue_thp_mbps")
    )
    with pytest.raises(NoDataError, match="no congestion condition is left"):
        congestion_flags(nulls, CongestionRule(), 60)
    strict = CongestionRule(absent_kpis="fail")
    with pytest.raises(NoDataError, match=r"needs dl_ue_thp_mbps .*absent_kpis to leave_out"):
        congestion_flags(network("prb_volume", 60), strict, 60)


def test_train_congestion_on_prb_and_volume_only(tmp_path):
    settings = tiny_settings(tmp_path)
    kpis = network("prb_volume", 15)
    candidate = congestion_family.train_congestion(
        features("prb_volume", 15), kpis, ModelParams.of(settings), "h"
    )
    assert candidate.coverage.startswith("congestion rule: congested: prb_util_dl_pct >= 80")
    assert "dl_ue_thp_mbps (congestion.thp_floor_mbps)" in candidate.params["rule_applied"]
    assert 0 <= candidate.metrics["val_pr_auc"] <= 1


def test_train_congestion_without_congestion_says_the_rule_as_applied(tmp_path):
    settings = tiny_settings(tmp_path)
    settings = settings.model_copy(
        update={"congestion": CongestionRule(prb_util_min_pct=101.0, min_active_ue=None)}
    )
    with pytest.raises(NoDataError, match=r"prb_util_dl_pct >= 101 for 3 ROPs.*left out"):
        congestion_family.train_congestion(
            features("prb_volume", 60), network("prb_volume", 60), ModelParams.of(settings), "h"
        )


def test_congestion_conditions_switch_off_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CELLPULSE_CONGESTION__THP_FLOOR_MBPS", "null")
    monkeypatch.setenv("CELLPULSE_CONGESTION__MIN_ACTIVE_UE", "null")
    assert load_settings().congestion == PRB_ONLY
    monkeypatch.setenv("CELLPULSE_CONGESTION__PRB_UTIL_MIN_PCT", "null")
    with pytest.raises(CellpulseError, match="active users alone"):
        load_settings()
