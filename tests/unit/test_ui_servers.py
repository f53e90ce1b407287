"""UI servers (`cellpulse ui`, `cellpulse prefect-ui`) stop with everything they started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

# A stand-in for `mlflow server`: it starts a worker process, as the real one does, writes
# the worker's pid, and serves forever.
SERVER = textwrap.dedent(
    """
    import subprocess, sys, time
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    open(sys.argv[1], "w").write(str(worker.pid))
    time.sleep(300)
    """
)
# The command: runs the stand-in the way the CLI runs a UI server.
COMMAND = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from cellpulse.runtime import run_server
    cmd = [sys.executable, "-c", sys.argv[1], sys.argv[2]]
    sys.exit(run_server(cmd, dict(os.environ), Path(sys.argv[3])))
    """
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has not reaped it yet.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


def test_a_terminated_ui_command_takes_its_server_and_the_server_s_workers_with_it(tmp_path):
    pid_file = tmp_path / "worker.pid"
    command = subprocess.Popen(
        [sys.executable, "-c", COMMAND, SERVER, str(pid_file), str(tmp_path)],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        worker = int(pid_file.read_text())
        assert alive(worker)
        command.send_signal(signal.SIGTERM)
        assert command.wait(timeout=30) == 0
        deadline = time.monotonic() + 15
        while alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(worker)
    finally:
        if command.poll() is None:
            os.killpg(command.pid, signal.SIGKILL)
