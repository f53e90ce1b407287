"""The hyperparameter search: trial 0 is the configured settings, trials are reproducible,
the time box holds, the best validation metric wins while the hold-out stays unseen, and
trials are nested MLflow runs (open while they fit, with every parameter and their data
windows)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import mlflow
import polars as pl
import pytest

from cellpulse.errors import NoDataError
from cellpulse.features.builder import build_features
from cellpulse.features.spec import default_spec
from cellpulse.models import tracking, tracking_runs, training, tuning
from cellpulse.models.families import congestion as congestion_family
from cellpulse.models.params import ModelParams
from cellpulse.models.promotion import PromotionRule
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


def hourly_data(days: int) -> training.TrainingData:
    """Two cells, hourly rows over `days` days, one labelled event a day: rows whose day
    the tests can read back."""
    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    ts = [t0 + timedelta(hours=h) for h in range(24 * days)]
    rows = pl.DataFrame({"cell_id": ["a"] * len(ts) + ["b"] * len(ts), "ts": ts + ts})
    events = pl.DataFrame(
        {
            "cell_id": ["a"] * days,
            "start": [t0 + timedelta(days=d, hours=10) for d in range(days)],
            "end": [t0 + timedelta(days=d, hours=12) for d in range(days)],
        }
    )
    return training.TrainingData(rows, rows.with_columns(prb_util_dl_pct=pl.lit(50.0)), events)


def test_trials_are_chosen_on_their_validation_window_and_never_see_the_hold_out():
    # num_leaves=15 is best on the hold-out, 7 on the validation window: 7 must be chosen.
    on_validation = {31: 0.50, 7: 0.70, 15: 0.60}
    on_holdout = {31: 0.50, 7: 0.40, 15: 0.90}
    data = hourly_data(7)
    cut = datetime(2026, 3, 7, tzinfo=UTC)  # the hold-out: the newest 2 of 7 days
    seen: list[training.TrainingData] = []

    def fit(train: TrainSettings, given: training.TrainingData) -> training.Candidate:
        seen.append(given)
        split = training.split_by_time(given.features, train.holdout_days)
        judged_on_holdout = split.holdout["ts"].max() >= cut
        value = (on_holdout if judged_on_holdout else on_validation)[train.num_leaves]
        return training.Candidate(
            "fake", None, {}, {"val_pr_auc": value}, {}, PromotionRule("val_pr_auc"), split
        )

    tuned = tuning.tune(
        fit, data, BASE.model_copy(update={"num_leaves": 31}), 3, 600, 1, {"num_leaves": (7, 15)}
    )
    assert sorted(t.params["num_leaves"] for t in tuned.trials) == [7, 15, 31]
    assert tuned.chosen.params == {"num_leaves": 7}
    assert tuned.chosen.primary == 0.70
    # Every row the trials were given lies before the hold-out, events included ...
    trials_saw = seen[:-1]
    assert len(trials_saw) == 3
    for given in trials_saw:
        assert given.features["ts"].max() < cut and given.kpis["ts"].max() < cut
        assert given.events is not None and given.events["start"].max() < cut
        assert given.features.height == 2 * 24 * 5
    # ... their validation window is the 2 days before it, and only the chosen refit sees it.
    assert tuned.chosen.candidate.split.holdout_days == (
        datetime(2026, 3, 5).date(),
        datetime(2026, 3, 6).date(),
    )
    assert seen[-1] is data
    assert tuned.candidate.metrics == {"val_pr_auc": 0.40}  # the gate sees the honest figure
    assert tuned.candidate.split.holdout["ts"].min() == cut


def test_tuning_needs_a_validation_window_as_long_as_the_hold_out():
    with pytest.raises(
        NoDataError, match="tuning needs more than 4 days of features \\(found 4\\)"
    ):
        tuning.selection_data(hourly_data(4), holdout_days=2)
    assert tuning.selection_data(hourly_data(5), holdout_days=2).features.height == 2 * 24 * 3


def test_a_tuned_congestion_model_is_judged_on_days_no_trial_saw(features, tiny_network, tmp_path):
    fit = fit_congestion(features, tiny_network[2], tmp_path)

    def fit_on(train: TrainSettings, data: training.TrainingData) -> training.Candidate:
        return congestion_family.train_congestion(
            data.features,
            data.kpis,
            ModelParams.of(tiny_settings(tmp_path).model_copy(update={"train": train})),
            SPEC.hash(),
        )

    data = training.TrainingData(features, tiny_network[2])
    tuned = tuning.tune(fit_on, data, BASE, trials=2, budget_s=600, seed=1, space=SPACE)
    holdout_start = tuned.candidate.split.holdout_days[0]
    for trial in tuned.trials:
        assert trial.candidate.split.holdout_days[1] < holdout_start
        assert trial.candidate.split.holdout["ts"].max() < tuned.candidate.split.holdout["ts"].min()
    # The refit is the chosen parameters on every day: the same model as fitting them directly.
    direct = fit(BASE.model_copy(update=tuned.chosen.params))
    assert tuned.candidate.metrics == direct.metrics


class Recorder:
    """A progress reporter that notes each loop's description, total and steps taken."""

    def __init__(self) -> None:
        self.loops: list[list[object]] = []

    def track(self, items, description, total):
        loop = [description, total, 0]
        self.loops.append(loop)
        for item in items:
            yield item
            loop[2] += 1


def test_each_trial_is_a_step_of_the_search_s_progress(monkeypatch):
    from cellpulse import progress

    recorder = Recorder()
    monkeypatch.setattr(progress, "_reporter", recorder)
    ticks = itertools.count()
    trials = tuning.search(
        lambda train: train,  # the "candidate" is the settings it was fitted with
        BASE,
        trials=10,
        budget_s=35,
        seed=1,
        space=SPACE,
        clock=lambda: 10.0 * next(ticks),
        description="tuning congestion: trials",
    )
    assert len(trials) == 2
    # Ten trials announced, two taken: the time box ended the search.
    assert recorder.loops == [["tuning congestion: trials", 10, 2]]
