"""Faults at flow level: the MLflow tracking server going away, the ops store being
unavailable while scoring, the disk filling up while features are written."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cellpulse.flows.features import features_flow
from cellpulse.flows.ingest import ingest_flow
from cellpulse.flows.score import score_flow
from cellpulse.flows.train import train_flow
from cellpulse.lake import files as lake_files
from cellpulse.ledger import Ledger
from cellpulse.models import tracking
from cellpulse.opsstore import OpsStoreUnavailable, open_ops_store
from cellpulse.runtime import TELEMETRY_OFF
from cellpulse.settings import SecretUrl
from cellpulse.simulator import build_topology, write_network
from tests.conftest import TINY, free_port, outage_events, tiny_settings


class MlflowServer:
    """A real `mlflow server` on a loopback port over a SQLite store in a folder."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        mlflow = Path(sys.executable).with_name("mlflow")
        self.process = subprocess.Popen(
            [
                str(mlflow),
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.folder / 'mlflow.db'}",
                "--default-artifact-root",
                (self.folder / "artifacts").as_uri(),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            env={**os.environ, **TELEMETRY_OFF},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("mlflow server did not come up")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None


@pytest.fixture
def network_home(tmp_path):
    settings = tiny_settings(tmp_path / "home")
    topo = build_topology(TINY)
    write_network(
        TINY,
        settings.layout.landing,
        settings.layout.ground_truth,
        settings.congestion,
        outage_events(topo),
    )
    ingest_flow(settings)
    features_flow(settings)
    return settings


def test_tracking_server_down_fails_training_clearly_and_keeps_the_champions(
    network_home, tmp_path, restore_environ
):
    server = MlflowServer(tmp_path / "mlflow", free_port())
    settings = network_home.model_copy(update={"mlflow_tracking_uri": SecretUrl(server.url)})
    server.start()
    try:
        first = train_flow(settings)
        assert {f: lg.version for f, lg in first.logged.items()} == {
            "anomaly": "1",
            "congestion": "1",
        }
    finally:
        server.stop()

    started = time.monotonic()
    with pytest.raises(tracking.TrackingUnavailable, match="unreachable") as failure:
        train_flow(settings)
    assert "champions are unchanged" in str(failure.value)
    assert time.monotonic() - started < 60  # a few retries, not minutes of hanging

    server.start()  # back: nothing was registered while it was away
    try:
        tracking.configure(settings)
        for family in ("anomaly", "congestion"):
            assert [v.version for v in tracking.list_versions(family)] == ["1"]
            assert tracking.champion_version(family) == "1"
    finally:
        server.stop()


def test_scores_land_in_the_lake_while_the_ops_store_is_busy_and_publish_later(
    network_home, restore_environ
):
    settings = network_home
    train_flow(settings)
    days = settings.layout.features.dates()[-2:]
    with open_ops_store(settings):
        pass  # create the store
    holder = subprocess.Popen(  # another process holding the DuckDB file's lock
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', "
            "flush=True); time.sleep(600)",
            str(settings.home / "ops.duckdb"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(OpsStoreUnavailable, match="ops store"):
            score_flow(settings, days)
    finally:
        holder.kill()
        holder.wait()
    scored = settings.layout.scores.read(days[0], days[-1])
    assert scored.height > 0  # the scores are safe in the lake ...
    with Ledger(settings.layout.ledger) as ledger:
        assert set(days) <= set(ledger.stale("scores"))  # ... and still owed to the store

    result = score_flow(settings, days)  # the store is back: the same scores are published
    assert result.rows == scored.height
    with open_ops_store(settings, read_only=True) as store:
        assert store.count("scores") == scored.height
    with Ledger(settings.layout.ledger) as ledger:
        assert not set(days) & set(ledger.stale("scores"))


def test_a_full_disk_while_writing_features_is_a_clear_error_and_loses_nothing(
    network_home, monkeypatch
):
    settings = network_home
    features = settings.layout.features
    day = features.dates()[-1]
    before = {f: f.read_bytes() for f in features.day_files(day)}

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lake_files, "_write_chunks", no_space)
    with pytest.raises(OSError, match="No space left"):
        from cellpulse.features.spec import FeatureParams, spec_for
        from cellpulse.features.store import build_day

        params = FeatureParams.of(settings)
        build_day(settings.layout, spec_for(params), day, params)
    assert {f: f.read_bytes() for f in features.day_files(day)} == before
    assert not [p for p in features.day_dir(day).rglob("*") if p.name.startswith(".")]
