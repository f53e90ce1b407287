"""What every flow shares: retry only on I/O trouble, never on bad input."""

from __future__ import annotations

from typing import Any

from cellpulse.errors import CellpulseError


def retry_on_io(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry OSErrors (a busy disk, a flaky mount, a server that is
    restarting), never a CellpulseError: bad input stays bad however often it is read."""
    try:
        state.result()
    except OSError:  # first: an unreachable store is both an OSError and a CellpulseError
        return True
    except CellpulseError:
        return False
    except Exception:
        return False
    return False
