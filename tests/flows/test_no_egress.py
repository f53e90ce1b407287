"""The sovereign promise: the whole demo — CLI, Prefect's server process, MLflow — runs without
a single connection or DNS lookup beyond loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GUARD = Path(__file__).resolve().parents[1] / "egress"


def test_demo_makes_no_connection_beyond_loopback(tmp_path):
    log = tmp_path / "egress.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(GUARD), env.get("PYTHONPATH", "")]),
            "CELLPULSE_EGRESS_LOG": str(log),
        }
    )
    # The guard itself must work, or a clean log proves nothing.
    probe = subprocess.run(
        [sys.executable, "-c", "import socket; socket.getaddrinfo('example.org', 443)"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.returncode != 0 and "egress refused" in probe.stderr
    log.unlink()

    cli = Path(sys.executable).with_name("cellpulse")
    run = subprocess.run(
        [str(cli), "demo", "--home", str(tmp_path / "home")],  # exactly what `make demo` runs
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "done in" in run.stdout
    assert "fault classifier: blend (" in run.stdout  # the demo's labels train it
    assert not log.exists(), log.read_text()
