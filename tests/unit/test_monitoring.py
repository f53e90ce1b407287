"""Monitoring checks on simulated networks: quiet when nothing changed, and each one fires
on the change it is for."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from cellpulse import monitoring
from cellpulse.features.builder import build_features
from cellpulse.features.spec import default_spec
from tests.conftest import TINY

SPLIT = TINY.start + timedelta(days=6)


def windows(kpis: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    day = pl.col("ts").dt.date()
    return kpis.filter(day < SPLIT), kpis.filter(day >= SPLIT)


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 20_000)
    assert monitoring.psi(base, rng.normal(0, 1, 20_000)) < 0.01
    assert monitoring.psi(base, rng.normal(1.0, 1, 20_000)) > 0.25
    assert np.isnan(monitoring.psi(base, np.array([np.nan])))


def test_feature_psi_finds_the_feature_that_moved(tiny_network):
    _, _, kpis = tiny_network
    spec = default_spec(TINY.rop_minutes)
    feats = build_features(kpis, spec, rop_minutes=TINY.rop_minutes, min_denominator=10)
    before, after = windows(feats)
    columns = ["prb_util_dl_pct", "dl_volume_mbit", "cqi_mean"]
    quiet = monitoring.feature_psi(before, after, columns, 0.25, share=0.2)
    assert not quiet.breached, quiet.summary
    moved = after.with_columns(pl.col("cqi_mean") - 3.0)  # e.g. a new CQI table
    shifted = monitoring.feature_psi(before, moved, columns, 0.25, share=0.2)
    assert shifted.breached and shifted.detail["feature"][0] == "cqi_mean"


def test_feature_drift_counts_when_a_share_of_the_features_moved_not_one_of_many():
    rng = np.random.default_rng(5)
    names = [f"f{i}" for i in range(10)]
    before = pl.DataFrame({n: rng.normal(0, 1, 5000) for n in names})
    after = pl.DataFrame({n: rng.normal(0, 1, 5000) for n in names})

    one = monitoring.feature_psi(before, after.with_columns(pl.col("f3") + 2), names, 0.25, 0.2)
    assert not one.breached and one.value == pytest.approx(0.1)
    assert one.detail["feature"][0] == "f3"
    assert "1 of 10 features shifted" in one.summary

    three = after.with_columns(pl.col("f1") + 2, pl.col("f3") + 2, pl.col("f7") * 3)
    many = monitoring.feature_psi(before, three, names, 0.25, 0.2)
    assert many.breached and many.value == pytest.approx(0.3) and many.threshold == 0.2
    assert set(many.detail["feature"].head(3)) == {"f1", "f3", "f7"}


def test_the_drift_picture_shows_the_most_shifted_features_first():
    from cellpulse import monitoring_plots

    rng = np.random.default_rng(6)
    names = [f"f{i}" for i in range(20)]
    before = pl.DataFrame({n: rng.normal(0, 1, 3000) for n in names})
    after = pl.DataFrame({n: rng.normal(0, 1, 3000) for n in names}).with_columns(
        pl.col("f4") + 3, pl.col("f9") * 2
    )
    psi = monitoring.feature_psi(before, after, names, 0.25, 0.2)
    picture = monitoring_plots.drift_picture(before, after, psi, 0.25)
    assert picture.startswith(b"\x89PNG") and 10_000 < len(picture) < 400_000

    page = monitoring_plots.drift_markdown(picture, psi, "file:///mlartifacts/x")
    assert "](data:image/png;base64," in page and "file:///mlartifacts/x" in page
    rows = [line for line in page.splitlines() if line.startswith("| f") and "PSI" not in line]
    assert [r.split(" | ")[0] for r in rows[:2]] == ["| f4", "| f9"]
    assert len(rows) == monitoring_plots.PANELS


def test_counter_availability_notices_a_counter_that_stopped(tiny_network):
    _, _, kpis = tiny_network
    before, after = windows(kpis)
    assert not monitoring.counter_availability(before, after, 0.2).breached
    stopped = after.with_columns(pl.lit(None, pl.Float64).alias("ho_att"))
    check = monitoring.counter_availability(before, stopped, 0.2)
    assert check.breached and check.value == pytest.approx(1.0)
    assert check.detail["kpi"][0] == "ho_att"


def test_topology_change_notices_new_cells_and_a_changed_band_mix(tiny_network):
    _, _, kpis = tiny_network
    before, after = windows(kpis)
    assert not monitoring.topology_change(before, after, 0.05).breached
    site = after["site_id"][0]
    grown = pl.concat(
        [
            after,
            after.filter(pl.col("site_id") == site)
            .head(96)
            .with_columns(pl.lit("NEW-CELL").alias("cell_id"), pl.lit("n258").alias("band")),
        ]
    )
    check = monitoring.topology_change(before, grown, 0.05)
    assert check.breached
    assert set(check.detail.rows()) == {("appeared", "NEW-CELL"), ("band mix", site)}


def test_score_shift_and_champion_performance():
    rng = np.random.default_rng(1)
    ref = pl.DataFrame(
        {"anomaly_score": rng.gamma(1.5, 1, 5000), "congestion_prob": rng.beta(1, 9, 5000)}
    )
    same = pl.DataFrame(
        {"anomaly_score": rng.gamma(1.5, 1, 5000), "congestion_prob": rng.beta(1, 9, 5000)}
    )
    assert not monitoring.score_shift(ref, same, 0.25).breached
    worse = same.with_columns(pl.col("anomaly_score") * 3)
    assert monitoring.score_shift(ref, worse, 0.25).breached

    t0 = pl.datetime(2026, 1, 13, time_zone="UTC")
    scores = pl.DataFrame(
        {"cell_id": ["a", "a", "b"], "ts": [0, 1, 1], "is_anomaly": [False, True, False]}
    ).with_columns((t0 + pl.duration(hours=pl.col("ts"))).alias("ts"))
    events = pl.DataFrame(
        {"cell_id": ["a", "b"], "kind": ["fault", "fault"], "offset": [0, 0]}
    ).with_columns(
        (t0 + pl.duration(hours=pl.col("offset"))).alias("start"),
        (t0 + pl.duration(hours=pl.col("offset") + 2)).alias("end"),
    )
    check = monitoring.champion_performance(scores, events, 0.6)
    assert check is not None and check.value == pytest.approx(0.5) and check.breached
    assert monitoring.champion_performance(scores, None, 0.5) is None


def test_without_a_champion_nothing_is_checked_and_the_report_says_so():
    days = [TINY.start + timedelta(days=d) for d in range(9)]
    report = monitoring.unchecked(days, 3, "no champion yet; drift not checked")
    assert report.checks == [] and not report.needs_retraining
    assert report.recent == (str(days[6]), str(days[8]))
    assert "no champion yet; drift not checked" in report.markdown()


def test_rows_a_baseline_scored_do_not_count_as_the_champion_s():
    scores = pl.DataFrame(
        {
            "cell_id": ["a", "a", "b"],
            "anomaly_model_version": ["baseline", "2", None],
            "anomaly_score": [5.0, 1.0, None],
        }
    )
    assert monitoring.model_scored(scores)["anomaly_score"].to_list() == [1.0]
