"""The monitoring flow on a tiny simulated network: checks logged to Prefect and MLflow, and
a crossed threshold runs the training flow."""

from __future__ import annotations

import mlflow
import pytest

from cellpulse.flows.monitor import monitor_flow
from cellpulse.flows.pipeline import pipeline_flow
from cellpulse.models import tracking
from cellpulse.settings import MonitorSettings
from cellpulse.simulator import build_topology, write_network
from tests.conftest import TINY, outage_events, tiny_settings


@pytest.fixture
def trained(tmp_path):
    settings = tiny_settings(tmp_path / "home")
    events = outage_events(build_topology(TINY))
    write_network(
        TINY, settings.layout.landing, settings.layout.ground_truth, settings.congestion, events
    )
    pipeline_flow(settings)
    return settings


def test_monitoring_logs_every_check_and_retrains_only_when_one_is_crossed(trained):
    quiet = trained.model_copy(update={"monitor": MonitorSettings()})
    outcome = monitor_flow(quiet)
    names = [c.name for c in outcome.report.checks]
    assert names[:4] == ["psi", "counter_availability", "topology", "score_shift"]
    assert not outcome.report.needs_retraining and not outcome.retrained, [
        (c.summary, c.detail.head(12).rows()) for c in outcome.report.breached
    ]
    tracking.configure(quiet)
    client = mlflow.MlflowClient()
    parent = client.get_run(outcome.mlflow_run_id)
    assert parent.data.metrics["checks_breached"] == 0.0
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{outcome.mlflow_run_id}'",
    )
    assert sorted(r.data.params["check"] for r in children) == sorted(names)
    assert tracking.champion_version("anomaly") == "1"

    touchy = trained.model_copy(update={"monitor": MonitorSettings(psi_threshold=1e-6)})
    drifted = monitor_flow(touchy)
    assert drifted.report.needs_retraining and drifted.retrained
    psi = next(c for c in drifted.report.checks if c.name == "psi")
    assert psi.breached and psi.detail.height > 50
    assert len(mlflow.MlflowClient().search_model_versions("name = 'cellpulse-anomaly'")) == 2
