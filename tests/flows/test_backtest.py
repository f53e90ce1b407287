"""Rolling-origin backtest on a tiny simulated network: folds tile the newest days, each is
a nested MLflow run under a parent that carries every metric's mean and spread."""

from __future__ import annotations

from datetime import timedelta

import mlflow
import pytest

from cellpulse.errors import NoDataError
from cellpulse.flows.backtest import backtest_flow
from cellpulse.flows.pipeline import pipeline_flow
from cellpulse.models import tracking
from cellpulse.models.backtest import fold_ends
from cellpulse.simulator import build_topology, write_network
from tests.conftest import TINY, outage_events, tiny_settings

DAYS = [TINY.start + timedelta(days=i) for i in range(TINY.days)]


def test_fold_ends_tile_the_newest_days():
    assert fold_ends(DAYS, 3, 2, 3) == [DAYS[4], DAYS[6], DAYS[8]]
    with pytest.raises(NoDataError, match="need 11 days"):
        fold_ends(DAYS, 4, 2, 3)


def test_backtest_logs_a_parent_with_mean_and_spread_and_a_nested_run_per_fold(tmp_path):
    settings = tiny_settings(tmp_path / "home")
    events = outage_events(build_topology(TINY))
    write_network(
        TINY, settings.layout.landing, settings.layout.ground_truth, settings.congestion, events
    )
    pipeline_flow(settings)
    result = backtest_flow(settings, folds=2)

    anomaly = result.folds["anomaly"]
    assert [f.test for f in anomaly] == [(DAYS[5], DAYS[6]), (DAYS[7], DAYS[8])]
    assert all(f.train[1] < f.test[0] for f in anomaly)  # trained on the past only
    assert all("val_mae_ratio" in f.metrics for f in anomaly)

    tracking.configure(settings)
    client = mlflow.MlflowClient()
    parent = client.get_run(result.runs["anomaly"])
    assert parent.data.tags["run.kind"] == "backtest"
    ratios = [
        f.metrics["val_mae_ratio"]
        for f in anomaly
        if f.metrics["val_mae_ratio"] == f.metrics["val_mae_ratio"]
    ]
    assert ratios  # NaN (a fold too short to measure) is left out of the summary
    assert parent.data.metrics["val_mae_ratio.mean"] == pytest.approx(sum(ratios) / len(ratios))
    assert "val_mae_ratio.std" in parent.data.metrics
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    windows = sorted(r.data.tags["data.holdout_window"] for r in children)
    assert windows == [f"{DAYS[5]}..{DAYS[6]}", f"{DAYS[7]}..{DAYS[8]}"]
    for run in children:
        fold = anomaly[int(run.data.params["fold"]) - 1]
        # Every parameter the fold trained with, and its windows as dataset inputs.
        assert {k: v for k, v in run.data.params.items() if k != "fold"} == {
            k: str(v) for k, v in fold.params.items()
        }
        assert "num_leaves" in run.data.params and "learning_rate" in run.data.params
        inputs = {
            {t.key: t.value for t in i.tags}["mlflow.data.context"]: i.dataset.name
            for i in run.inputs.dataset_inputs
        }
        assert inputs == {
            "training": f"features {fold.train[0]}..{fold.train[1]}",
            "holdout": f"features {fold.test[0]}..{fold.test[1]}",
        }
        # Open while the fold trained: inside the parent's span, not a blink at the end.
        assert parent.info.start_time <= run.info.start_time < run.info.end_time
        assert run.info.end_time <= parent.info.end_time
    starts = sorted(r.info.start_time for r in children)
    ends = sorted(r.info.end_time for r in children)
    assert ends[0] <= starts[1]  # one fold after the other, each logged as it finished
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/per_fold.png" in plots
    assert tracking.champion_version("anomaly") == "1"  # the registry is not touched
