"""A command that runs flows without a Prefect server of its own starts a temporary one;
killed with SIGKILL, the command must not leave that server running on its own."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cellpulse.runtime import TELEMETRY_OFF
from cellpulse.simulator import build_topology, write_network
from tests.conftest import TINY, outage_events, tiny_settings

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            _, _, rest = stat.read_text().rpartition(")")
            if int(rest.split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    """Running: it exists and is not a zombie waiting to be reaped."""
    try:
        _, _, rest = Path(f"/proc/{pid}/stat").read_text().rpartition(")")
    except OSError:
        return False
    return rest.split()[0] != "Z"


def _wait_for(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    return None


def test_a_killed_command_takes_its_temporary_prefect_server_with_it(tmp_path):
    settings = tiny_settings(tmp_path / "home")
    write_network(
        TINY,
        settings.layout.landing,
        settings.layout.ground_truth,
        settings.congestion,
        outage_events(build_topology(TINY)),
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        **TELEMETRY_OFF,
    }
    cellpulse = str(Path(sys.executable).parent / "cellpulse")
    log = tmp_path / "ingest.log"
    parent = subprocess.Popen(
        [cellpulse, "ingest", "--home", str(settings.home)],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = None
    try:
        server = _wait_for(
            lambda: next(
                (c for c in _children(parent.pid) if b"\0-m\0uvicorn\0" in _cmdline(c)), None
            ),
            60,
        )
        assert server, f"no Prefect server child appeared: {log.read_text()[-2000:]}"
        time.sleep(1)  # the server is up and serving, not merely starting
        assert parent.poll() is None, "the command ended before it could be killed"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        gone = _wait_for(lambda: not _alive(server), 10)
        assert gone, f"the temporary Prefect server (pid {server}) outlived its killed parent"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)  # the server shares the command's group
        if server and _alive(server):
            with contextlib.suppress(ProcessLookupError):
                os.kill(server, signal.SIGKILL)
        parent.wait(timeout=10)
