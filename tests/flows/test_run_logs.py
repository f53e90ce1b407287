"""What someone watching the Prefect UI reads: each flow run logs what it did in the words of
the domain (files, rows, days, models, alerts), the drift picture is an artifact there and
on the MLflow run, and the long loops report progress to whatever shows it (the CLI)."""

from __future__ import annotations

from datetime import UTC, datetime

import mlflow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    LogFilter,
    LogFilterTimestamp,
)
from prefect.client.schemas.sorting import ArtifactSort
from prefect.logging.handlers import APILogHandler

from cellpulse import progress
from cellpulse.flows.backtest import backtest_flow
from cellpulse.flows.monitor import monitor_flow
from cellpulse.flows.pipeline import pipeline_flow
from cellpulse.models import tracking
from cellpulse.models.tracking_drift import DRIFT_PICTURE
from cellpulse.simulator import build_topology, write_network
from tests.conftest import TINY, outage_events, tiny_settings


class Recorder:
    """A progress reporter noting each loop's description and the steps it took."""

    def __init__(self) -> None:
        self.loops: dict[str, int] = {}

    def track(self, items, description, total):
        self.loops[description] = 0
        for item in items:
            yield item
            self.loops[description] += 1


def run_logs(since: datetime) -> list[str]:
    """Every flow- and task-run log line the Prefect API holds since `since`."""
    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(timestamp=LogFilterTimestamp(after_=since)))
    return [log.message for log in logs]


def test_flow_runs_log_what_they_did_and_show_progress_and_the_drift_picture(tmp_path, monkeypatch):
    settings = tiny_settings(tmp_path / "home")
    events = outage_events(build_topology(TINY))
    write_network(
        TINY, settings.layout.landing, settings.layout.ground_truth, settings.congestion, events
    )
    recorder = Recorder()
    monkeypatch.setattr(progress, "_reporter", recorder)
    since = datetime.now(UTC)

    pipeline_flow(settings)
    backtest_flow(settings, folds=1)
    outcome = monitor_flow(settings)

    logs = run_logs(since)
    said = "\n".join(logs)
    assert "ingest: 216 files read (216 ingested" in said
    assert any(m.startswith("features: 9 days (") and "rows" in m for m in logs), said
    assert "train: " in said and "rows of features" in said
    assert "train anomaly: model cellpulse-anomaly version 1 promoted to champion" in said
    assert any(m.startswith("score: 9 days") and "alerts (" in m for m in logs), said
    assert "daily pipeline: 216 files ingested; features rebuilt for 9 days" in said
    assert "backtest: 1 folds of 2 test days" in said and "models trained, MLflow run" in said
    assert f"monitor: recent days {outcome.report.recent[0]}" in said

    # The long loops reported their steps: the CLI draws them as bars.
    assert recorder.loops["train: model families"] == 2
    assert recorder.loops["backtest: folds"] == 1
    assert recorder.loops["backtest fold 1: families"] == 2
    assert recorder.loops["features: building days"] == 9

    # The drift picture: on the monitoring MLflow run, and embedded in a Prefect artifact.
    tracking.configure(settings)
    artifacts = mlflow.MlflowClient().list_artifacts(outcome.mlflow_run_id)
    assert DRIFT_PICTURE in [a.path for a in artifacts]
    with get_client(sync_client=True) as client:
        drift = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["feature-drift"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert drift and "](data:image/png;base64," in str(drift[0].data)
    assert outcome.mlflow_run_id in str(drift[0].data)  # where the MLflow copy is
