"""The served path for real: a Prefect server on a free loopback port, `cellpulse serve`
registering the deployments, a run triggered through the server's REST API and seen to
complete; the schedules registered are the documented ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cellpulse.runtime import TELEMETRY_OFF
from cellpulse.simulator import build_topology, write_network
from tests.conftest import TINY, free_port, outage_events, tiny_settings
from tests.unit.test_notify import Receiver

DOCUMENTED = {  # flows/deployments.py and docs/operations.md
    "every-rop": {"interval": 900.0, "timezone": "UTC"},
    "features-daily": {"cron": "0 1 * * *", "timezone": "UTC"},
    "train-weekly": {"cron": "0 2 * * 0", "timezone": "UTC"},
    "monitor-daily": {"cron": "0 3 * * *", "timezone": "UTC"},
    "housekeeping-daily": {"cron": "30 4 * * *", "timezone": "UTC"},
}
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _call(api: str, method: str, path: str, body: object = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        api + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except urllib.error.HTTPError as exc:
            if exc.code != 503:  # a server still starting answers 503: ask again
                raise
            value = None
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def prefect_server(tmp_path):
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        **TELEMETRY_OFF,
        "PREFECT_HOME": str(tmp_path / "prefect-server"),
        "PREFECT_SERVER_UI_ENABLED": "false",
    }
    bin_dir = Path(sys.executable).parent
    proc = _start(
        [str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env,
        tmp_path / "server.log",
    )
    api = f"http://127.0.0.1:{port}/api"

    def healthy() -> bool:
        try:
            return _call(api, "GET", "/health") is True
        except OSError:
            return proc.poll() is not None and pytest.fail((tmp_path / "server.log").read_text())

    try:
        _wait(healthy, 120, "the Prefect server")
        yield api
    finally:
        _stop(proc)


def test_serve_registers_the_documented_schedules_and_runs_a_triggered_pipeline(
    tmp_path, prefect_server
):
    api = prefect_server
    settings = tiny_settings(tmp_path / "home")
    events = outage_events(build_topology(TINY), hours=15.0)  # still open at the newest ROP
    write_network(
        TINY, settings.layout.landing, settings.layout.ground_truth, settings.congestion, events
    )
    # The tiny models of the other flow tests, through a config file as an operator would.
    config = tmp_path / "cellpulse.yaml"
    config.write_text("train: {num_trees: 25, n_jobs: 1, holdout_days: 2, min_data_in_leaf: 20}\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        **TELEMETRY_OFF,
        "PREFECT_API_URL": api,
    }
    # A secret in the served process's environment: the deployed runs must get it (the
    # receiver sees the token) without Prefect storing it (no flow run's parameters hold it).
    receiver = Receiver([])
    env["CELLPULSE_ALERTS__WEBHOOK_URL"] = f"{receiver.url}?token=t0k-serve"
    cellpulse = str(Path(sys.executable).parent / "cellpulse")
    served = _start(
        [cellpulse, "serve", "--home", str(settings.home), "--config", str(config)],
        env,
        tmp_path / "serve.log",
    )
    try:
        deployments = _wait(
            lambda: (
                found
                if len(found := _call(api, "POST", "/deployments/filter", {})) == len(DOCUMENTED)
                else served.poll() is not None and pytest.fail((tmp_path / "serve.log").read_text())
            ),
            90,
            f"{len(DOCUMENTED)} deployments",
        )
        registered = {}
        for d in deployments:
            (schedule,) = [s["schedule"] for s in d["schedules"]]
            registered[d["name"]] = {k: schedule[k] for k in DOCUMENTED[d["name"]]}
            assert d["global_concurrency_limit"]["limit"] == 1, d["name"]
            assert d["parameters"]["home"] == str(settings.home)
        assert registered == DOCUMENTED
        limit = _call(api, "GET", "/v2/concurrency_limits/cellpulse-training")
        assert limit["limit"] == 1  # no two trainings at once, whichever deployment runs them

        by_name = {d["name"]: d for d in deployments}
        run = _call(
            api,
            "POST",
            f"/deployments/{by_name['every-rop']['id']}/create_flow_run",
            {"parameters": {"manual": True}},
        )
        state = _wait(
            lambda: (
                s
                if (s := _call(api, "GET", f"/flow_runs/{run['id']}")["state"])["type"] in TERMINAL
                else None
            ),
            300,
            "the triggered pipeline run",
        )
        assert state["type"] == "COMPLETED", state.get("message")
        scores = settings.layout.scores.read()
        assert scores.height == TINY.cells * TINY.days * TINY.rops_per_day
        assert receiver.paths and all(p == "/hook?token=t0k-serve" for p in receiver.paths)
        runs = _call(api, "POST", "/flow_runs/filter", {})
        assert len(runs) > 1  # the deployment's run and its subflows
        assert "t0k-serve" not in json.dumps([r["parameters"] for r in runs])
    finally:
        _stop(served)
        receiver.close()
