"""Behavioural model tests on a tiny simulated network with one known outage."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from cellpulse.features.builder import build_features
from cellpulse.features.spec import default_spec
from cellpulse.models.anomaly import alert_flags
from cellpulse.models.families import anomaly as anomaly_family
from cellpulse.models.families import congestion as congestion_family
from cellpulse.models.params import ModelParams
from cellpulse.models.promotion import PromotionRule, decide_promotion
from tests.conftest import OUTAGE_CELL, tiny_settings

SPEC = default_spec(15)


@pytest.fixture(scope="module")
def features(tiny_network):
    return build_features(tiny_network[2], SPEC, rop_minutes=15, min_denominator=10)


@pytest.fixture(scope="module")
def anomaly(tiny_network, features, tmp_path_factory):
    settings = tiny_settings(tmp_path_factory.mktemp("home"))
    return anomaly_family.train_anomaly(
        features, tiny_network[1], ModelParams.of(settings), SPEC.hash()
    ), settings


def test_injected_outage_outranks_every_normal_cell(tiny_network, anomaly):
    topo, events, _ = tiny_network
    candidate, settings = anomaly
    holdout = candidate.split.holdout
    scored = anomaly_family.score_anomaly(candidate.model, holdout, ModelParams.of(settings))
    ev = events.row(0, named=True)
    during = scored.filter((pl.col("ts") >= ev["start"]) & (pl.col("ts") < ev["end"]))
    worst = during.group_by("cell_id").agg(
        pl.col("anomaly_score").min().alias("low"), pl.col("anomaly_score").max().alias("high")
    )
    outage = worst.filter(pl.col("cell_id") == topo.cell_id[OUTAGE_CELL])
    others = worst.filter(pl.col("cell_id") != topo.cell_id[OUTAGE_CELL])
    # Sustained: even its weakest ROP of the outage beats every other cell's strongest.
    assert outage["low"].item() > others["high"].max()
    flagged = during.filter(pl.col("cell_id") == topo.cell_id[OUTAGE_CELL])
    assert flagged["is_anomaly"].sum() >= flagged.height - 2  # all but the first N-1 ROPs
    assert "availability_pct" in flagged["anomaly_kpis"][5].to_list()
    assert candidate.metrics["val_event_recall"] == 1.0
    assert candidate.figures["slices.png"].startswith(b"\x89PNG")  # per-slice table plot


def test_the_anomaly_gate_judges_by_recall_at_the_false_alarm_budget(anomaly):
    """With labelled faults in the hold-out, the model and every baseline (the hour-of-day
    z-score among them) are measured at the same alarm budget, and the gate reads that."""
    candidate = anomaly[0]
    assert candidate.rule.primary == "val_recall_at_budget"
    assert candidate.rule.secondary == "val_pr_auc" and candidate.rule.guards == ("val_pr_auc",)
    # The one outage is found within 0.5 false alarms per 100 cell-days.
    assert candidate.metrics["val_recall_at_budget"] == 1.0
    for name in ("zscore", "hour_zscore", "iforest"):
        assert 0.0 <= candidate.baselines[f"baseline_{name}_recall_at_budget"] <= 1.0
    assert candidate.params["gate_false_alarms_per_100_cell_days"] == 0.5
    best = max(v for k, v in candidate.baselines.items() if k.endswith("_recall_at_budget"))
    assert candidate.baseline_reference() == {"val_recall_at_budget": best}


def test_scores_ignore_row_and_column_order(anomaly):
    candidate, settings = anomaly
    holdout = candidate.split.holdout
    base = anomaly_family.score_anomaly(candidate.model, holdout, ModelParams.of(settings))
    shuffled = holdout.sample(fraction=1.0, shuffle=True, seed=3)
    shuffled = shuffled.select(list(reversed(shuffled.columns)))
    again = anomaly_family.score_anomaly(candidate.model, shuffled, ModelParams.of(settings))
    assert again.equals(base)


def test_same_seed_gives_the_same_model_and_scores(tiny_network, features, anomaly):
    candidate, settings = anomaly
    twin = anomaly_family.train_anomaly(
        features, tiny_network[1], ModelParams.of(settings), SPEC.hash()
    )
    holdout = candidate.split.holdout
    a = candidate.model.score(holdout)["anomaly_score"].to_numpy()
    b = twin.model.score(holdout)["anomaly_score"].to_numpy()
    assert np.array_equal(a, b)
    assert twin.metrics == candidate.metrics


def test_congestion_model_beats_its_baselines_and_is_a_probability(
    tiny_network, features, tmp_path
):
    settings = tiny_settings(tmp_path)
    candidate = congestion_family.train_congestion(
        features, tiny_network[2], ModelParams.of(settings), SPEC.hash()
    )
    prob = candidate.model.predict(candidate.split.holdout)
    assert ((prob >= 0) & (prob <= 1)).all()
    metrics, baselines = candidate.metrics, candidate.baselines
    assert set(baselines) >= {
        "baseline_persistence_pr_auc",
        "baseline_seasonal_pr_auc",
        "baseline_prb_util_pr_auc",
    }
    if not math.isnan(metrics["val_pr_auc"]):
        assert metrics["val_pr_auc"] >= baselines["baseline_persistence_pr_auc"]


def test_congestion_can_forecast_the_next_days_busy_hour(tiny_network, features, tmp_path):
    base = tiny_settings(tmp_path)
    settings = base.model_copy(
        update={"congestion": base.congestion.model_copy(update={"horizon": "next_day_busy_hour"})}
    )
    candidate = congestion_family.train_congestion(
        features, tiny_network[2], ModelParams.of(settings), SPEC.hash()
    )
    assert candidate.model.horizon == "busy hour D+1"
    assert candidate.params["horizon"] == "busy hour D+1"
    # One label per cell and local day: every ROP of a day forecasts the same busy hour.
    labels = congestion_family.congestion_labels(
        candidate.split.holdout, tiny_network[2], ModelParams.of(settings)
    )
    per_day = labels.group_by("cell_id", pl.col("ts").dt.date()).agg(
        pl.col("congested_within").n_unique()
    )
    assert (per_day["congested_within"] == 1).all()
    assert labels["congested_within"].any()  # the tiny network's busy hours do congest
    assert not math.isnan(candidate.metrics["val_pr_auc"])
    assert "baseline_persistence_pr_auc" in candidate.baselines


def test_congestion_probability_can_be_calibrated_on_a_later_slice(
    tiny_network, features, tmp_path
):
    base = tiny_settings(tmp_path)
    # Hold out the last day and calibrate on the Monday before it (the weekend has no
    # congestion to calibrate on; then the raw probability would be kept).
    settings = base.model_copy(
        update={"train": base.train.model_copy(update={"holdout_days": 1, "calibration_days": 1})}
    )
    candidate = congestion_family.train_congestion(
        features, tiny_network[2], ModelParams.of(settings), SPEC.hash()
    )
    model = candidate.model
    assert candidate.params["calibrated"] is True and model.calibration is not None
    _, knots_y = model.calibration
    assert knots_y == sorted(knots_y)  # isotonic: more raw probability, never less calibrated
    assert "calibration_curve.png" in candidate.figures
    assert {"val_brier", "val_brier_uncalibrated"} <= set(candidate.metrics)
    # On the slice it was fitted to, the isotonic map can only lower the Brier score (the
    # identity is one of the monotone maps it chose among).
    monday = features.filter(
        pl.col("ts").dt.date() == features["ts"].dt.date().max() - timedelta(days=1)
    )
    truth = congestion_family.congestion_labels(monday, tiny_network[2], ModelParams.of(settings))[
        "congested_within"
    ]
    known = truth.is_not_null().to_numpy()
    y = truth.fill_null(False).to_numpy()[known]
    brier = lambda p: float(np.mean((p[known] - y) ** 2))  # noqa: E731
    assert brier(model.predict(monday)) <= brier(model.predict_raw(monday))

    raw = congestion_family.train_congestion(
        features, tiny_network[2], ModelParams.of(base), SPEC.hash()
    )
    assert raw.params["calibrated"] is False and raw.model.calibration is None
    assert raw.metrics["val_brier"] == pytest.approx(raw.metrics["val_brier_uncalibrated"])


def test_alert_needs_consecutive_anomalous_rops():
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    scores = [1, 9, 9, 1, 9, 9, 9, 9, 1]
    df = pl.DataFrame(
        {
            "cell_id": ["a"] * 9,
            "ts": [t0 + timedelta(minutes=15 * i) for i in range(9)],
            "anomaly_score": [float(s) for s in scores],
        }
    )
    flags = alert_flags(df, threshold=5.0, consecutive=3, rop_minutes=15).to_list()
    assert flags == [False, False, False, False, False, False, True, True, False]


RULE = PromotionRule(
    "val_pr_auc", ("val_brier",), margin=0.01, tolerance=0.02, higher_is_better={"val_brier": False}
)


def test_first_model_must_beat_the_baseline():
    assert decide_promotion({"val_pr_auc": 0.6}, None, {"val_pr_auc": 0.3}, RULE).promote
    no = decide_promotion({"val_pr_auc": 0.3}, None, {"val_pr_auc": 0.5}, RULE)
    assert not no.promote and "worse than the baseline" in no.reason
    tie = decide_promotion(
        {"val_pr_auc": 1.0}, None, {"val_pr_auc": 1.0}, PromotionRule("val_pr_auc")
    )
    assert tie.promote and "matches baseline" in tie.reason


def test_worse_challenger_is_not_promoted():
    champion = {"val_pr_auc": 0.7, "val_brier": 0.01}
    worse = decide_promotion({"val_pr_auc": 0.65, "val_brier": 0.01}, champion, {}, RULE)
    assert not worse.promote and "champion stays" in worse.reason
    within_margin = decide_promotion({"val_pr_auc": 0.705, "val_brier": 0.01}, champion, {}, RULE)
    assert not within_margin.promote


def test_better_challenger_is_promoted_unless_a_guard_breaks():
    champion = {"val_pr_auc": 0.7, "val_brier": 0.01}
    better = decide_promotion({"val_pr_auc": 0.8, "val_brier": 0.011}, champion, {}, RULE)
    assert better.promote and "beats champion" in better.reason
    guard = decide_promotion({"val_pr_auc": 0.8, "val_brier": 0.05}, champion, {}, RULE)
    assert not guard.promote and "val_brier" in guard.reason


def test_a_first_anomaly_model_must_match_the_best_baseline_at_the_same_alarm_budget(tmp_path):
    """A detector that ranks fault ROPs better (PR-AUC) but finds fewer events at the budget
    than the hour-of-day z-score is not promoted: the budget, not the ranking, decides."""
    from cellpulse.models.families.anomaly import anomaly_rule
    from cellpulse.models.training import Candidate

    rule = anomaly_rule(tiny_settings(tmp_path).train, labelled=True)
    baselines = {
        "baseline_zscore_recall_at_budget": 0.5,
        "baseline_hour_zscore_recall_at_budget": 0.8,
        "baseline_iforest_recall_at_budget": 0.2,
        "baseline_zscore_pr_auc": 0.9,
    }
    # The split is not read by the gate.
    candidate = Candidate("anomaly", None, {}, {}, baselines, rule, None)  # type: ignore[arg-type]
    reference = candidate.baseline_reference()
    assert reference == {"val_recall_at_budget": 0.8}
    ranks_better = {"val_recall_at_budget": 0.75, "val_pr_auc": 0.95}
    refused = decide_promotion(ranks_better, None, reference, rule)
    assert not refused.promote and "val_recall_at_budget=0.7500 is worse" in refused.reason
    assert decide_promotion({"val_recall_at_budget": 0.8}, None, reference, rule).promote


def test_a_tie_at_the_budget_is_broken_by_pr_auc_and_guarded_by_it():
    rule = PromotionRule(
        "val_recall_at_budget", ("val_pr_auc",), tolerance=0.02, secondary="val_pr_auc"
    )
    champion = {"val_recall_at_budget": 0.5, "val_pr_auc": 0.40}
    ranks_better = decide_promotion(
        {"val_recall_at_budget": 0.5, "val_pr_auc": 0.60}, champion, {}, rule
    )
    assert ranks_better.promote
    assert "matches champion 0.5000 and beats it on val_pr_auc (0.6000 vs 0.4000)" in (
        ranks_better.reason
    )
    same = decide_promotion({"val_recall_at_budget": 0.5, "val_pr_auc": 0.40}, champion, {}, rule)
    assert not same.promote and "champion stays" in same.reason
    finds_more = {"val_recall_at_budget": 0.75, "val_pr_auc": 0.30}
    guarded = decide_promotion(finds_more, champion, {}, rule)
    assert not guarded.promote and "val_pr_auc worsens beyond tolerance" in guarded.reason


def test_frozen_counters_score_although_every_value_looks_normal(tiny_network, anomaly):
    """The node repeats one report for three hours: nothing is out of range, but the run of
    identical values scores and names frozen_counters as the driver."""
    from cellpulse import contract
    from cellpulse.models.anomaly import FROZEN

    topo, _, kpis = tiny_network
    candidate, _ = anomaly
    cell = topo.cell_id[(OUTAGE_CELL + 5) % len(topo.cell_id)]
    start = candidate.split.holdout["ts"].min() + timedelta(hours=10)
    window = (pl.col("cell_id") == cell) & pl.col("ts").is_between(
        start, start + timedelta(hours=3), closed="left"
    )
    first = kpis.filter((pl.col("cell_id") == cell) & (pl.col("ts") == start))
    frozen = kpis.with_columns(
        pl.when(window).then(first[m].item()).otherwise(pl.col(m)).alias(m)
        for m in contract.MEASUREMENT_NAMES
        if m not in ("prb_avail_dl", "unavail_s")
    )
    feats = build_features(frozen, SPEC, rop_minutes=15, min_denominator=10)
    scored = feats.select("cell_id", "ts").with_columns(candidate.model.score(feats))
    during = scored.filter(window & (pl.col("ts") >= start + timedelta(hours=1)))
    assert during.height == 8
    # One more spread per repeated ROP: the driver from the first hour, above the alert
    # threshold from the second.
    assert all(FROZEN in kpis_ for kpis_ in during["anomaly_kpis"].to_list())
    assert (during["anomaly_score"].diff().drop_nulls() > 0).all()
    assert (during["anomaly_score"].tail(6) > candidate.model.threshold).all()
    others = scored.filter(pl.col("cell_id") != cell)
    assert not others["anomaly_kpis"].list.contains(FROZEN).any()


def test_per_slice_metrics_recompute_the_pr_auc_within_each_slice(tiny_network, features, tmp_path):
    from cellpulse.models.evaluation import pr_auc, slice_metrics

    settings = tiny_settings(tmp_path)
    candidate = congestion_family.train_congestion(
        features, tiny_network[2], ModelParams.of(settings), SPEC.hash()
    )
    assert candidate.figures["slices.png"].startswith(b"\x89PNG")
    dims = pl.DataFrame({"region": ["n", "n", "s", "s", "s"], "band": ["a", "b", "a", "a", "b"]})
    y = np.array([1, 0, 0, 1, 1])
    score = np.array([0.9, 0.1, 0.8, 0.2, 0.7])
    table = slice_metrics(dims, y, {"model": score})
    south = table.filter((pl.col("slice") == "region") & (pl.col("value") == "s")).row(
        0, named=True
    )
    assert (south["rows"], south["positives"]) == (3, 2)
    assert south["pr_auc_model"] == pytest.approx(pr_auc(y[2:], score[2:]))
    assert table.filter(pl.col("slice") == "band").height == 2


def test_model_matrix_is_row_major_float64_with_the_exact_values():
    from cellpulse.models.boosting import matrix

    frame = pl.DataFrame(
        {
            "f32": pl.Series([0.1, None, 3.5], dtype=pl.Float32),
            "count": pl.Series([1, 2, None], dtype=pl.Int32),
            "flag": [True, False, True],
        }
    )
    expected = np.array([[np.float32(0.1), 1.0, 1.0], [np.nan, 2.0, 0.0], [3.5, np.nan, 1.0]])
    for df in (frame, frame.with_columns(pl.Series("count", [1, 2, 2**40], dtype=pl.Int64))):
        x = matrix(df, ["f32", "count", "flag"])
        assert x.dtype == np.float64 and x.flags["C_CONTIGUOUS"]
        want = expected.copy()
        want[2, 1] = np.nan if df["count"][2] is None else float(df["count"][2])
        assert np.array_equal(x, want, equal_nan=True)
    only_float32 = matrix(frame, ["f32"])  # no wider column to widen into
    assert only_float32.dtype == np.float64 and only_float32.flags["C_CONTIGUOUS"]
    assert np.array_equal(only_float32, expected[:, [0]], equal_nan=True)
    reordered = matrix(frame, ["flag", "f32"])
    assert np.array_equal(reordered, expected[:, [2, 0]], equal_nan=True)


def test_training_matrix_is_float32_only_where_every_value_is_exact():
    from cellpulse.models.boosting import rows_of, training_matrix

    frame = pl.DataFrame(
        {
            "f32": pl.Series([0.1, None, 3.5], dtype=pl.Float32),
            "hour": pl.Series([1, 2, 23], dtype=pl.Int8),
            "count": pl.Series([1, None, 2**24], dtype=pl.Int32),
            "flag": [True, False, True],
        }
    )
    x = training_matrix(frame, ["f32", "hour", "count", "flag"])
    assert x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    want = np.array([[0.1, 1, 1, 1], [np.nan, 2, np.nan, 0], [3.5, 23, 2**24, 1]], np.float32)
    assert np.array_equal(x, want, equal_nan=True)
    # A value a float32 would round keeps the whole matrix float64.
    beyond = frame.with_columns(pl.Series("count", [1, None, 2**24 + 1], dtype=pl.Int32))
    wide = frame.with_columns(pl.Series("f32", [0.1, None, 3.5], dtype=pl.Float64))
    for df in (beyond, wide):
        assert training_matrix(df, ["f32", "count"]).dtype == np.float64
    # Rows of a target with a value everywhere are the matrix itself, not a copy.
    assert rows_of(x, np.ones(3, bool)) is x
    assert np.array_equal(rows_of(x, np.array([True, False, True])), x[[0, 2]], equal_nan=True)


def test_float32_training_matrices_train_exactly_the_float64_models(
    tiny_network, features, labelled_network, tmp_path, monkeypatch
):
    """Stored features are Float32: training on them as float32 (half the memory), or on
    the frame itself (no dense copy), bins and grows the same trees as training on their
    float64 widening."""
    import cellpulse.models.anomaly as anomaly_module
    import cellpulse.models.congestion as congestion_module
    import cellpulse.models.supervised as supervised_module
    from cellpulse.models.boosting import matrix

    events, labelled = labelled_network
    params = ModelParams.of(tiny_settings(tmp_path))

    def train() -> tuple[dict[str, str], np.ndarray, np.ndarray]:
        anomaly = anomaly_family.train_anomaly(labelled, events, params, SPEC.hash())
        congestion = congestion_family.train_congestion(
            features, tiny_network[2], params, SPEC.hash()
        )
        model = anomaly.model
        assert model.classifier is not None
        boosters = {**model.boosters, "fault": model.classifier.booster}
        boosters["congestion"] = congestion.model.booster
        dumps = {k: b.model_to_string() for k, b in boosters.items()}
        scores = anomaly_family.score_anomaly(model, anomaly.split.holdout, params)
        return (
            dumps,
            scores["anomaly_score"].to_numpy(),
            congestion.model.predict(congestion.split.holdout),
        )

    narrow = train()
    for module in (anomaly_module, congestion_module, supervised_module):
        # Every model on the dense float64 matrix, whatever it trains on (float32 matrix,
        # or a frame LightGBM bins column by column).
        for name in ("training_matrix", "training_frame"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, matrix)
    wide = train()
    assert narrow[0].keys() == wide[0].keys()
    for name, dump in narrow[0].items():
        assert dump == wide[0][name], name
    assert np.array_equal(narrow[1], wide[1]) and np.array_equal(narrow[2], wide[2])


def test_leaving_known_faults_out_fits_the_model_of_the_rows_without_them(
    labelled_network, tmp_path
):
    """Fitting cuts the known faults from the columns it reads, not from the whole feature
    row: the same regressors, spreads and threshold as fitting on the rows without them."""
    from cellpulse.features.targets import event_labels
    from cellpulse.models.anomaly import AnomalyModel
    from cellpulse.models.evaluation import fault_events

    events, labelled = labelled_network
    params = anomaly_family.anomaly_params(tiny_settings(tmp_path).train)
    faults = fault_events(events)
    assert faults is not None
    exclude = event_labels(labelled, faults)
    assert 0 < exclude.sum() < labelled.height
    cut = AnomalyModel.fit(labelled, "s", params, exclude=exclude)
    clean = AnomalyModel.fit(labelled.filter(~exclude), "s", params)
    assert cut.feature_names == clean.feature_names and cut.watched == clean.watched
    for kpi, booster in clean.boosters.items():
        assert cut.boosters[kpi].model_to_string() == booster.model_to_string(), kpi
    assert cut.threshold == clean.threshold and cut.global_scale == clean.global_scale
    assert cut.cell_scale.sort("cell_id").equals(clean.cell_scale.sort("cell_id"))
    assert cut.change_scale.sort("cell_id").equals(clean.change_scale.sort("cell_id"))
    assert cut.frozen_kpis == clean.frozen_kpis and cut.units == clean.units


def test_early_stopping_keeps_the_trees_a_later_period_confirms():
    from cellpulse.models.anomaly import AnomalyParams
    from cellpulse.models.boosting import best_rounds

    rng = np.random.default_rng(11)
    x = rng.normal(size=(4000, 3))
    params = AnomalyParams(num_trees=60, n_jobs=1, min_data_in_leaf=20).regressor_params()
    signal = np.sin(2 * x[:, 0]) + 0.5 * x[:, 1]
    learnable = best_rounds(
        params, (x[:3000], signal[:3000]), (x[3000:], signal[3000:]), 60, 5, ["a", "b", "c"]
    )
    noise = rng.normal(size=4000)
    hopeless = best_rounds(
        params, (x[:3000], noise[:3000]), (x[3000:], noise[3000:]), 60, 5, ["a", "b", "c"]
    )
    assert learnable >= 50  # keeps improving: (nearly) every round is kept
    assert hopeless <= 10  # nothing to learn: stops almost at once


def test_regressors_grow_only_the_trees_the_newest_day_confirms(tiny_network, features, tmp_path):
    settings = tiny_settings(tmp_path)

    def replace(settings, train):
        return settings.model_copy(update={"train": train})

    stopping = replace(
        settings, train=settings.train.model_copy(update={"early_stopping_rounds": 3})
    )
    fixed = replace(settings, train=settings.train.model_copy(update={"early_stopping_rounds": 0}))
    stopped = anomaly_family.train_anomaly(
        features, tiny_network[1], ModelParams.of(stopping), SPEC.hash()
    ).model
    full = anomaly_family.train_anomaly(
        features, tiny_network[1], ModelParams.of(fixed), SPEC.hash()
    ).model
    grown = {k: b.num_trees() for k, b in full.boosters.items()}
    trees = {k: b.num_trees() for k, b in stopped.boosters.items()}
    assert set(trees) == set(grown)
    # Without early stopping every KPI with something to split on grows all 25 trees.
    assert max(grown.values()) == 25
    assert all(1 <= trees[k] <= grown[k] for k in trees)
    assert sum(trees.values()) < sum(grown.values())


def test_budget_threshold_reads_the_clean_tail_despite_unlabelled_faults():
    """Daily peaks of normal cell-days (Gumbel) with 2 % of cell-days holding a fault far
    above: the threshold for 0.5 alerts per 100 cell-days lands in the clean peaks' upper
    tail (between their 98th and 99.5th percentiles: TAIL_SCALE shortens the Gumbel
    extrapolation, which errs high on real cross-fitted peaks), where the raw quantile
    would sit among the faults."""
    from cellpulse.models.anomaly import budget_threshold

    rng = np.random.default_rng(5)
    clean = rng.gumbel(2.0, 0.6, 20_000)
    faults = rng.uniform(20, 50, 400)
    peaks = np.concatenate([clean, faults])
    threshold = budget_threshold(peaks, 0.5)
    assert np.quantile(peaks, 0.995) > 20
    assert np.quantile(clean, 0.98) < threshold < np.quantile(clean, 0.995)
    assert budget_threshold(peaks, 0.1) > threshold  # a smaller budget, a higher bar


def test_level_change_compares_a_day_with_the_same_day_a_week_earlier():
    from datetime import UTC, datetime

    from cellpulse.features.spec import FeatureSpec, LevelChange

    ts = [datetime(2026, 1, 5, tzinfo=UTC) + timedelta(hours=h) for h in range(9 * 24)]
    volume = [100.0] * (8 * 24) + [60.0] * 24  # the last day at 0.6 of its level
    kpis = pl.DataFrame(
        {
            "cell_id": "c1",
            "ts": ts,
            "region": "r",
            "site_id": "s",
            "band": "b",
            "rat": "LTE",
            "dl_volume_mbit": volume,
        }
    )
    spec = FeatureSpec(kpis=("dl_volume_mbit",), changes=(LevelChange("dl_volume_mbit"),))
    feats = build_features(kpis, spec, rop_minutes=60, min_denominator=10)
    change = feats["dl_volume_mbit_change_24h_vs_7d"].to_list()
    assert change[7 * 24 - 1] is None  # nothing a week earlier yet
    assert change[7 * 24] == pytest.approx(0.0)
    assert change[8 * 24 + 11] == pytest.approx((12 * 60 + 12 * 100) / 2400 - 1)
    assert change[-1] == pytest.approx(-0.4)


def test_a_holiday_s_lower_demand_is_not_a_fault_but_a_silent_cell_still_is(tiny_network, anomaly):
    """On a day the operator lists as a holiday, traffic and users at 40 % of a workday
    raise no demand evidence; the same fall on a workday does, and a cell that carries
    nothing at all is down even on a holiday."""
    from cellpulse.models.anomaly import DRIVER_Z, NO_TRAFFIC

    topo = tiny_network[0]
    candidate, _ = anomaly
    model = candidate.model
    busy = candidate.split.holdout.filter(
        pl.col("hour").is_between(10, 18) & (pl.col("cell_id") != topo.cell_id[OUTAGE_CELL])
    )
    low = busy.with_columns(pl.col(k) * 0.4 for k in ("dl_volume_mbit", "rrc_conn_mean"))
    workday = model.zscores(low.with_columns(is_holiday=pl.lit(False)))
    holiday = model.zscores(low.with_columns(is_holiday=pl.lit(True)))
    assert (workday["dl_volume_mbit"] >= DRIVER_Z).mean() > 0.25
    # (a row that was already far below its expectation stays evidence: see HOLIDAY_FLOOR)
    assert (holiday["dl_volume_mbit"] == 0).mean() > 0.99
    assert (holiday["rrc_conn_mean"] == 0).mean() > 0.99
    assert (holiday[NO_TRAFFIC] == 0).all()
    silent = busy.with_columns(pl.lit(0.0).alias(k) for k in ("dl_volume_mbit", "rrc_conn_mean"))
    down = model.zscores(silent.with_columns(is_holiday=pl.lit(True)))
    assert (down["dl_volume_mbit"] > 0).mean() > 0.9
    assert (down[NO_TRAFFIC] > 0).mean() > 0.9


def test_a_cell_that_stops_carrying_traffic_alerts_within_the_alert_rule_s_run(
    tiny_network, anomaly
):
    """Traffic and users at zero for three hours on a cell whose spread is unknown to the
    residuals' scale: the no_traffic evidence scores from the first ROP, so the alert is
    up within `consecutive_rops` ROPs; cells that carry their traffic never name it (the
    injected outage does)."""
    from cellpulse.models.anomaly import NO_TRAFFIC, Z_CAP

    candidate, settings = anomaly
    params = ModelParams.of(settings)
    holdout = candidate.split.holdout
    cell = holdout["cell_id"].unique().sort()[0]
    start = holdout["ts"].min() + timedelta(hours=11)
    window = (pl.col("cell_id") == cell) & pl.col("ts").is_between(
        start, start + timedelta(hours=3), closed="left"
    )
    silent = holdout.with_columns(
        pl.when(window).then(0.0).otherwise(pl.col(k)).alias(k)
        for k in ("dl_volume_mbit", "rrc_conn_mean")
    )
    z = candidate.model.zscores(silent)
    assert (z.filter(silent.select(window).to_series())[NO_TRAFFIC] == Z_CAP).all()
    outage = pl.col("cell_id") == tiny_network[0].cell_id[OUTAGE_CELL]
    assert (z.filter(silent.select(~window & ~outage).to_series())[NO_TRAFFIC] == 0).all()
    assert (z.filter(silent.select(outage).to_series())[NO_TRAFFIC] > 0).any()
    scored = anomaly_family.score_anomaly(candidate.model, silent, params)
    alerted = scored.filter(window & pl.col("is_anomaly"))["ts"]
    # No later than the alert rule's run: the ROPs just before may already have been high.
    assert alerted.min() <= start + timedelta(minutes=15 * (params.alerts.consecutive_rops - 1))


def test_a_busy_cell_s_slow_throughput_is_labelled_congestion_not_a_fault(tiny_network, anomaly):
    """Throughput at a fifth of its expectation: at 95 % PRB utilisation the load explains
    it (its evidence leaves the score, `congestion` named first); at 30 % it is a fault."""
    from cellpulse.models.anomaly import CONGESTION

    topo = tiny_network[0]
    candidate, _ = anomaly
    model = candidate.model
    rows = candidate.split.holdout.filter(
        pl.col("hour").is_between(10, 18) & (pl.col("cell_id") != topo.cell_id[OUTAGE_CELL])
    )
    slow = rows.with_columns(pl.col("dl_ue_thp_mbps") * 0.2)
    busy = model.score(slow.with_columns(prb_util_dl_pct=pl.lit(95.0, pl.Float32)))
    quiet = model.score(slow.with_columns(prb_util_dl_pct=pl.lit(30.0, pl.Float32)))
    assert (quiet["anomaly_kpis"].list.first() == "dl_ue_thp_mbps").mean() > 0.5
    named = busy["anomaly_kpis"]
    assert (named.list.first() == CONGESTION).mean() > 0.5
    assert not named.list.contains("dl_ue_thp_mbps").any()
    assert busy["anomaly_score"].median() < 0.5 * quiet["anomaly_score"].median()


def test_a_level_shift_stays_evidence_for_as_long_as_it_lasts(tiny_network, anomaly):
    """Traffic and users halved on one cell for the hold-out's days: judged against the
    cell's hour-of-day profile, its busy hours are evidence on the last day as on the
    first, where the regressors' expectation (day-old values) has followed the shift."""
    from dataclasses import replace as copy_with

    from cellpulse.models.anomaly import DRIVER_Z
    from cellpulse.models.profile import HourProfile

    topo, _, kpis = tiny_network
    candidate = anomaly[0]
    holdout = candidate.split.holdout
    first = holdout["ts"].min()
    cell = topo.cell_id[OUTAGE_CELL + 1]
    shifted = (pl.col("cell_id") == cell) & (pl.col("ts") >= first)
    halved = kpis.with_columns(
        pl.when(shifted).then(pl.col(k) * 0.5).otherwise(pl.col(k)).alias(k)
        for k in ("dl_volume_mbit", "rrc_conn_mean")
    )
    rows = build_features(halved, SPEC, rop_minutes=15, min_denominator=10).filter(
        shifted & pl.col("ts").dt.hour().is_between(9, 18)
    )
    last_day = (rows["ts"].dt.date() == rows["ts"].dt.date().max()).to_numpy()
    profiled = candidate.model
    regressors_only = copy_with(profiled, profile=HourProfile())
    share = {}
    for name, model in (("profile", profiled), ("regressors", regressors_only)):
        z = model.zscores(rows)["dl_volume_mbit"].to_numpy()
        share[name] = float((z[last_day] >= DRIVER_Z).mean())
    assert share["profile"] > 0.9
    assert share["profile"] > share["regressors"] + 0.3
