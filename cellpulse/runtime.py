"""The process environment cellpulse sets for itself before any server library loads.

Sovereignty starts here: every dependency's telemetry is switched off, and Prefect's and
MLflow's state lives under the cellpulse home instead of the user's home directory. A
command that runs flows without a Prefect server of its own gets a temporary one here,
bound to this process's life.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from cellpulse.errors import CellpulseError
from cellpulse.settings import Settings

# Always forced: no call may leave the operator's network.
TELEMETRY_OFF = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "true",  # MLflow reads "true", not "1"
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    "SE_AVOID_STATS": "true",  # Selenium (browser tests) never reports usage
}

# Defaults a user may override in their own environment.
DEFAULTS = {
    # LightGBM/OpenMP threads spin-wait by default; on a busy 2-core host that is 100x slower.
    "OMP_WAIT_POLICY": "PASSIVE",
    # Run logs go to the Prefect API (and UI) in full; the terminal gets cellpulse's own
    # summary and one-line errors instead of Prefect's per-task chatter and tracebacks.
    "PREFECT_LOGGING_LEVEL": "INFO",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "GIT_PYTHON_REFRESH": "quiet",
    # A tracking server that stops answering fails a call in seconds, not after MLflow's
    # default seven retries with back-off (minutes); the flows retry at their own level.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def configure_process(settings: Settings) -> None:
    """Prepare os.environ for Prefect and MLflow (call before importing either), and the
    memory allocator."""
    if settings.keep_freed_memory:
        keep_freed_memory()
    os.environ.update(TELEMETRY_OFF)
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("PREFECT_HOME", str(settings.layout.prefect_home))
    os.environ["MLFLOW_TRACKING_URI"] = settings.tracking_uri


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse instead of handing every large block
    back to the operating system.

    Feature and scoring steps allocate and free arrays of hundreds of megabytes over and
    over. By default glibc maps each such block afresh and unmaps it when freed, so every
    page is faulted in again on the next use; on hosts that return freed memory to the
    hypervisor, that costs a quarter of the feature build's time. Served from the heap and
    kept there, the pages are reused: faster, for a resident size that stays near its peak.
    Returns whether the allocator took the settings (False off glibc, e.g. on macOS)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 1 << 30))


# Run as `python -c _DIE_WITH_PARENT <parent pid> <args…>`: ask Linux to SIGKILL this
# process when its parent dies (PR_SET_PDEATHSIG survives the exec below), then become
# `python <args…>`. The parent is the thread that started it, so the server is started from
# the main thread, which lives as long as the process. Elsewhere (macOS) there is no death
# signal and only a normal exit of the parent stops the server.
_DIE_WITH_PARENT = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
except AttributeError:
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""
_PORT_IN_USE = 3  # uvicorn's exit status when the port was taken meanwhile


def start_prefect_server(settings: Settings) -> str | None:
    """Start a temporary Prefect API server for this command's flow runs, unless one is
    configured (`PREFECT_API_URL`) or Prefect is already loaded (then its own settings
    decide, as under the test harness). Returns the API URL it set, or None.

    Prefect would otherwise start such a server itself, as a plain child process: a
    command killed with SIGKILL leaves it running on its own (hundreds of MB each). This
    one is the same server (Prefect's app, services off, state under the home), started so
    that it dies with this process, however this process ends."""
    if os.environ.get("PREFECT_API_URL") or "prefect" in sys.modules:
        return None
    settings.layout.prefect_home.mkdir(parents=True, exist_ok=True)
    log_path = settings.layout.prefect_server_log
    timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90"))
    for _ in range(3):
        port = _free_port()
        proc = _spawn_server(port, log_path)
        atexit.register(_stop, proc)
        api = f"http://127.0.0.1:{port}/api"
        if _wait_healthy(proc, api, timeout):
            os.environ["PREFECT_API_URL"] = api
            return api
        if proc.returncode != _PORT_IN_USE:
            _stop(proc)
            raise CellpulseError(
                f"the temporary Prefect server did not start within {timeout:.0f} s "
                f"(status {proc.returncode}); see {log_path}, or run a Prefect server and "
                "set PREFECT_API_URL"
            )
    raise CellpulseError("no free loopback port for the temporary Prefect server; retry")


def prefect_ui_server(host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The command and environment of a Prefect server with its UI, on the flow runs under
    PREFECT_HOME (the home's, once `configure_process` ran), at `host`:`port`.

    The UI asks `/ui-settings` where the API is: by default PREFECT_API_URL, else the
    default port 4200 whatever port the server listens on, so a UI on another port shows
    "Can't connect to Server API". Both are set to this server's own address."""
    api = f"http://{host}:{port}/api"
    env = {
        **os.environ,
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_API_URL": api,
        "PREFECT_UI_API_URL": api,
        "PREFECT_UI_ENABLED": "true",
    }
    prefect = [sys.executable, "-m", "prefect"]
    return [*prefect, "server", "start", "--host", host, "--port", str(port)], env


def run_server(cmd: list[str], env: dict[str, str], cwd: Path) -> int:
    """Run a UI server (`cmd`) in the foreground until it exits or this process is asked to
    stop (Ctrl-C, SIGTERM, SIGHUP), then stop it with everything it started, and return its
    exit status. The server runs in its own process group: `mlflow server` and `prefect
    server start` each start worker processes that a signal to the first alone would leave
    running on their own."""
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, start_new_session=True)

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to `proc`'s process group, SIGKILL to what is left after 10 s."""
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                proc.poll()
                return
            proc.poll()  # reap the leader so the group can empty
            time.sleep(0.1)


def _spawn_server(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    uvicorn = [
        "-m",
        "uvicorn",
        "--factory",
        "prefect.server.api.server:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]
    env = {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",  # Prefect's temporary-server mode: no UI, no services
        "PREFECT__SERVER_FINAL": "1",
    }
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *uvicorn],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )


def _wait_healthy(proc: subprocess.Popen[bytes], api: str, timeout: float) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with opener.open(f"{api}/health", timeout=2) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
