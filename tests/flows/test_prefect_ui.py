"""The Prefect UI on the demo's runs, on a port other than Prefect's default: the page must
call the API on the port it was served from (PREFECT_SERVER_PORT=4299 used to show "Can't
connect to Server API at http://127.0.0.1:4200/api")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cellpulse.runtime import TELEMETRY_OFF
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> bytes:
    with LOOPBACK.open(url, timeout=5) as answer:
        return bytes(answer.read())


def serve_and_read_ui_settings(cmd: list[str], env: dict[str, str], port: int) -> dict:
    """Start `cmd` (a Prefect server), wait until it answers, return its /ui-settings; the
    server's whole process group is stopped afterwards."""
    proc = subprocess.Popen(
        cmd,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if get(f"http://127.0.0.1:{port}/api/health"):
                    return json.loads(get(f"http://127.0.0.1:{port}/ui-settings"))
            except OSError:
                time.sleep(0.5)
        pytest.fail("the Prefect server did not answer within 180 s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def clean_env(tmp_path: Path, port: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREFECT_") and k not in ("CELLPULSE_HOME", "MLFLOW_TRACKING_URI")
    }
    env.update(TELEMETRY_OFF)
    env["PREFECT_SERVER_PORT"] = str(port)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.mark.parametrize("how", ["cellpulse prefect-ui", "infra/prefect-server.sh"])
def test_the_prefect_ui_calls_the_api_on_the_port_it_is_served_from(how, tmp_path):
    port = free_port()
    env = clean_env(tmp_path, port)
    if how == "cellpulse prefect-ui":
        home = tmp_path / "home"
        home.mkdir()
        cmd = [sys.executable, "-m", "cellpulse.cli", "prefect-ui", "--home", str(home)]
    else:
        env["PREFECT_HOME"] = str(tmp_path / "prefect")
        cmd = ["sh", str(REPO / "infra" / "prefect-server.sh")]
    ui = serve_and_read_ui_settings(cmd, env, port)
    assert ui["api_url"] == f"http://127.0.0.1:{port}/api"
