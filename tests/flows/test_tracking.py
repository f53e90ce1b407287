"""What a data scientist reads in MLflow after training twice (configured, then tuned): the
same metric names in every training run, run names that tell tuned from configured, runs
open while the model fits, versions that say what they were trained on and why they were
(not) promoted, a champion history to read, and experiments that open on their runs."""

from __future__ import annotations

import time

import mlflow
import pytest

import cellpulse.flows.train as train_module
from cellpulse.flows.pipeline import pipeline_flow
from cellpulse.flows.train import train_flow
from cellpulse.models import tracking
from cellpulse.simulator import build_topology, write_network
from tests.conftest import TINY, outage_events, tiny_settings


def test_training_runs_of_a_family_compare_column_for_column(tmp_path, monkeypatch):
    settings = tiny_settings(tmp_path / "home")
    events = outage_events(build_topology(TINY))
    write_network(
        TINY, settings.layout.landing, settings.layout.ground_truth, settings.congestion, events
    )
    fits: list[tuple[int, int]] = []  # (start, end) of every fit, in ms like MLflow's times
    fit = train_module.fit_candidate

    def timed_fit(*args, **kwargs):
        started = int(time.time() * 1000)
        candidate = fit(*args, **kwargs)
        fits.append((started, int(time.time() * 1000)))
        return candidate

    monkeypatch.setattr(train_module, "fit_candidate", timed_fit)
    first = pipeline_flow(settings).train
    assert first is not None
    configured_fit = fits[0]  # anomaly fits first (families go by name)
    fits.clear()
    second = train_flow(settings, tune=2, only=("anomaly",))

    tracking.configure(settings)
    client = mlflow.MlflowClient()
    runs = [client.get_run(r.logged["anomaly"].run_id) for r in (first, second)]
    # Same metric names, tuned or not, with or without a champion to compare with.
    assert set(runs[0].data.metrics) == set(runs[1].data.metrics)
    assert "champion_val_pr_auc" in runs[0].data.metrics  # NaN: no champion yet
    assert [r.data.tags["training.params"] for r in runs] == ["configured", "tuned"]
    names = [r.data.tags["mlflow.runName"] for r in runs]
    assert "configured" in names[0] and "tuned (trial " in names[1] and " of 2)" in names[1]
    # Each run was open from before its model's first fit until after its last.
    for run, (fit_start, fit_end) in (
        (runs[0], configured_fit),
        (runs[1], (fits[0][0], fits[-1][1])),
    ):
        assert run.info.start_time <= fit_start and run.info.end_time >= fit_end
        assert run.info.status == "FINISHED"

    name = tracking.MODEL_NAMES["anomaly"]
    version = client.get_model_version(name, second.logged["anomaly"].version)
    window = runs[1].data.tags["data.train_window"]
    assert f"Trained on features of {window}" in version.description
    assert "tuned parameters (trial" in version.description
    assert second.logged["anomaly"].decision.reason in version.description

    champion = client.get_model_version_by_alias(name, "champion")
    table = mlflow.artifacts.load_text(f"runs:/{champion.run_id}/registry/champion_history.md")
    assert table.splitlines()[0] == "| when (UTC) | by | from | to | why |"
    moves = tracking.alias_history("anomaly")
    assert len(table.splitlines()) == 2 + len(moves)
    assert "Champion history" in client.get_registered_model(name).description

    experiment = client.get_experiment(runs[0].info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    # A training that breaks leaves a FAILED run, never one that looks still running.
    def broken_fit(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(train_module, "fit_candidate", broken_fit)
    with pytest.raises(RuntimeError, match="disk full"):
        train_flow(settings, only=("anomaly",))
    statuses = [
        r.info.status
        for r in mlflow.search_runs(
            [runs[0].info.experiment_id],
            filter_string="tags.`run.kind` = 'training'",
            output_format="list",
        )
    ]
    assert sorted(statuses) == ["FAILED", "FINISHED", "FINISHED"]
