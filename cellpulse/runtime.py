"""The process environment cellpulse sets for itself before any server library loads.

Sovereignty starts here: every dependency's telemetry is switched off, and Prefect's and
MLflow's state lives under the cellpulse home instead of the user's home directory.
"""

from __future__ import annotations

import os

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
    os.environ.setdefault("PREFECT_HOME", str(settings.prefect_home))
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
