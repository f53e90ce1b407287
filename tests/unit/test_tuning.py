"""The hyperparameter search: trial 0 is the configured settings, trials are reproducible,
the time box holds, the best hold-out metric wins, and trials are nested MLflow runs (open
while they fit, with every parameter and their data windows)."""

from __future__ import annotations

import itertools

import mlflow
import pytest

from cellpulse.features.builder import build_features
from cellpulse.features.spec import default_spec
from cellpulse.models import tracking, tracking_runs, training, tuning
from cellpulse.models.families import congestion as congestion_family
from cellpulse.models.params import ModelParams
from cellpulse.settings import TrainSettings
from tests.conftest import tiny_settings

SPEC = default_spec(15)
BASE = TrainSettings(num_trees=10, n_jobs=1, holdout_days=2, min_data_in_leaf=20, seed=3)
SPACE = {"num_leaves": (7, 15, 31), "num_trees": (5, 10, 20), "min_data_in_leaf": (20, 40)}


@pytest.fixture(scope="module")
def features(tiny_network):
    return build_features(tiny_network[2], SPEC, rop_minutes=15, min_denominator=10)


def fit_congestion(features, kpis, home):
    def fit(train: TrainSettings) -> training.Candidate:
        settings = tiny_settings(home).model_copy(update={"train": train})
        return congestion_family.train_congestion(
            features, kpis, ModelParams.of(settings), SPEC.hash()
        )

    return fit


def test_search_starts_from_the_configured_settings_and_is_reproducible(
    features, tiny_network, tmp_path
):
    fit = fit_congestion(features, tiny_network[2], tmp_path)
    trials = tuning.search(fit, BASE, trials=4, budget_s=600, seed=1, space=SPACE)
    again = tuning.search(fit, BASE, trials=4, budget_s=600, seed=1, space=SPACE)
    assert len(trials) == 4
    assert trials[0].params == {"num_leaves": 31, "num_trees": 10, "min_data_in_leaf": 20}
    assert [t.params for t in trials] == [t.params for t in again]
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4  # no repeats
    assert [t.candidate.params["num_trees"] for t in trials] == [
        t.params["num_trees"] for t in trials
    ]
    chosen = tuning.best(trials)
    assert chosen.primary == max(t.primary for t in trials)  # PR-AUC: higher is better
    assert [t.primary for t in trials] == [t.primary for t in again]  # same seed, same models


def test_the_time_box_stops_the_search_after_the_trial_that_spent_it(
    features, tiny_network, tmp_path
):
    ticks = itertools.count()
    fit = fit_congestion(features, tiny_network[2], tmp_path)
    # A clock that advances 10 s per reading: 30 s have passed when trial 1 may start
    # (under the 35 s budget), 60 s when trial 2 would.
    trials = tuning.search(
        fit, BASE, trials=10, budget_s=35, seed=1, space=SPACE, clock=lambda: 10.0 * next(ticks)
    )
    assert len(trials) == 2


def context_of(dataset_input) -> str:
    """The context ("training", "holdout") a run's dataset input was logged with."""
    return {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"]


def test_trials_are_nested_runs_under_one_tuning_run(
    features, tiny_network, tmp_path, restore_environ
):
    settings = tiny_settings(tmp_path / "home")
    tracking.configure(settings)
    fit = fit_congestion(features, tiny_network[2], tmp_path)
    with tracking_runs.tuning_runs("congestion", settings, {}) as runs:
        trials = tuning.search(runs.tracked(fit), BASE, trials=3, budget_s=600, seed=2, space=SPACE)
        chosen = tuning.best(trials)
        runs.finish(trials, chosen)
    parent_id = runs.run_id
    parent = mlflow.get_run(parent_id)
    assert parent.data.tags["run.kind"] == "tuning"
    assert parent.data.tags["tuning.best_trial"] == str(chosen.number)
    assert parent.data.metrics["best_val_pr_auc"] == pytest.approx(chosen.primary)
    client = mlflow.MlflowClient()
    assert "plots/per_trial.png" in {a.path for a in client.list_artifacts(parent_id, "plots")}
    children = mlflow.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
        output_format="list",
    )
    assert len(children) == 3
    chosen_runs = [c for c in children if c.data.tags["tuning.chosen"] == "True"]
    assert len(chosen_runs) == 1
    assert chosen_runs[0].data.params["num_leaves"] == str(chosen.params["num_leaves"])
    for child in children:
        trial = trials[int(child.data.tags["tuning.trial"])]
        # Every parameter the trial trained with, not only the searched ones.
        assert child.data.params == {k: str(v) for k, v in trial.candidate.params.items()}
        assert set(child.data.params) > set(SPACE)
        # The run was open while the trial fitted.
        seconds = child.data.metrics["fit_seconds"]
        assert (child.info.end_time - child.info.start_time) / 1000 >= seconds - 0.002
        windows = {context_of(i): i.dataset.name for i in child.inputs.dataset_inputs}
        split = trial.candidate.split
        assert windows == {
            "training": f"features {split.train_days[0]}..{split.train_days[1]}",
            "holdout": f"features {split.holdout_days[0]}..{split.holdout_days[1]}",
        }
