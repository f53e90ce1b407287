"""Supervised mode: a fault classifier learned from labelled events, blended with (or
replacing) the unsupervised score, its alerts explained by its own contributions."""

from __future__ import annotations

import numpy as np
import pytest

from cellpulse.features.spec import default_spec
from cellpulse.models.families import anomaly as anomaly_family
from cellpulse.models.params import ModelParams
from cellpulse.models.supervised import as_score, kpi_of
from cellpulse.settings import TrainSettings
from tests.conftest import tiny_settings

SPEC = default_spec(15)


def settings_with(tmp_path, **train):
    base = tiny_settings(tmp_path)
    return base.model_copy(update={"train": base.train.model_copy(update=train)})


@pytest.fixture(scope="module")
def blended(labelled_network, tmp_path_factory):
    events, features = labelled_network
    settings = settings_with(tmp_path_factory.mktemp("home"), supervised="blend")
    return anomaly_family.train_anomaly(
        features, events, ModelParams.of(settings), SPEC.hash()
    ), settings


def test_columns_map_to_the_kpi_they_describe():
    columns = [
        "prb_util_dl_pct",
        "prb_util_dl_pct_mean_24h",
        "dl_volume_mbit",
        "dl_volume_mbit_lag_1d",
        "dl_volume_mbit_share",
        "hour",
        "hour_of_week",
        "dev_drop_rate_pct",
    ]
    assert kpi_of(columns) == {
        "prb_util_dl_pct": "prb_util_dl_pct",
        "prb_util_dl_pct_mean_24h": "prb_util_dl_pct",
        "dl_volume_mbit": "dl_volume_mbit",
        "dl_volume_mbit_lag_1d": "dl_volume_mbit",
        "dl_volume_mbit_share": "dl_volume_mbit",
        "dev_drop_rate_pct": "drop_rate_pct",
    }


def test_blend_finds_more_than_the_residuals_alone(blended):
    candidate, _ = blended
    model, metrics = candidate.model, candidate.metrics
    assert model.classifier is not None and model.classifier.events >= 5
    assert candidate.params["supervised"].startswith("blend (")
    # Both halves are logged next to the blend, so a data scientist sees what it buys.
    assert metrics["val_classifier_pr_auc"] > metrics["val_unsupervised_pr_auc"]
    assert metrics["val_pr_auc"] > metrics["val_unsupervised_pr_auc"]
    assert metrics["val_event_recall"] >= 0.7


def test_blend_is_the_stronger_evidence_and_explains_its_alerts(blended):
    candidate, settings = blended
    model = candidate.model
    holdout = candidate.split.holdout.sort("cell_id", "ts")
    parts = model.components(holdout)
    supervised = as_score(parts.probability, model.threshold)
    assert np.array_equal(
        parts.frame["anomaly_score"].to_numpy(), np.maximum(parts.unsupervised, supervised)
    )
    # Alerting rows the classifier raises carry the KPIs its contributions name.
    scored = anomaly_family.score_anomaly(model, holdout, ModelParams.of(settings))
    by_classifier = (supervised > parts.unsupervised) & scored["is_anomaly"].to_numpy()
    assert by_classifier.any()
    kpis = scored["anomaly_kpis"].to_list()
    known = set(model.classifier.kpis.values())
    for row in np.flatnonzero(by_classifier):
        assert kpis[row] and set(kpis[row]) <= known
    # Explained once per run, at its most probable row: that row's own contributions.
    peak = int(np.flatnonzero(by_classifier)[np.argmax(parts.probability[by_classifier])])
    assert kpis[peak] == model.classifier.drivers(parts.inputs[[peak]])[0]
    # Scoring stays independent of row order with the classifier in the score.
    shuffled = holdout.sample(fraction=1.0, shuffle=True, seed=1)
    assert anomaly_family.score_anomaly(model, shuffled, ModelParams.of(settings)).equals(scored)


def test_replace_scores_with_the_probability_alone(labelled_network, tmp_path):
    events, features = labelled_network
    settings = settings_with(tmp_path, supervised="replace")
    candidate = anomaly_family.train_anomaly(
        features, events, ModelParams.of(settings), SPEC.hash()
    )
    holdout = candidate.split.holdout.sort("cell_id", "ts")
    parts = candidate.model.components(holdout)
    assert np.array_equal(
        parts.frame["anomaly_score"].to_numpy(),
        as_score(parts.probability, candidate.model.threshold),
    )
    assert candidate.metrics["val_pr_auc"] == pytest.approx(
        candidate.metrics["val_classifier_pr_auc"]
    )


def test_too_few_labelled_events_or_off_leave_the_model_unsupervised(labelled_network, tmp_path):
    events, features = labelled_network
    scarce = settings_with(tmp_path / "a", supervised_min_events=1000)
    candidate = anomaly_family.train_anomaly(features, events, ModelParams.of(scarce), SPEC.hash())
    assert candidate.model.classifier is None
    assert "1000 needed" in candidate.params["supervised"]
    assert "val_classifier_pr_auc" not in candidate.metrics
    off = settings_with(tmp_path / "b", supervised="off")
    assert (
        anomaly_family.train_anomaly(features, events, ModelParams.of(off), SPEC.hash()).params[
            "supervised"
        ]
        == "off"
    )


def test_supervised_mode_is_a_validated_setting():
    with pytest.raises(ValueError):
        TrainSettings(supervised="sometimes")
