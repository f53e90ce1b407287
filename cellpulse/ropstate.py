"""What one every-ROP run hands the next: the newest ROP it published, the feature rows of
the ROPs just before that one (the context the consecutive-ROP alert rule and the
explanation of alerts look back on), and the alerts still open with what continues them.

With it, a run reads and computes only the ROPs a delivery brought and a bounded lookback,
and publishes what the daily batch would for the same rows (`cellpulse.publish.advance_alerts`,
`cellpulse.models.scoring.score_rops`)."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from cellpulse import lake

NEWEST_KEY = "cellpulse.rop_newest"
STATE_FILE = "state.json"
CONTEXT_FILE = "context.parquet"
ALERTS_FILE = "open_alerts.parquet"


@dataclass(frozen=True)
class RopState:
    """The newest ROP published (`newest`, its start), the feature spec it was built with,
    the context feature rows (ROPs up to `newest`) and the open alerts (with
    `publish.CARRIED`)."""

    newest: datetime
    spec_hash: str
    context: pl.DataFrame
    open_alerts: pl.DataFrame


def context_rops(consecutive_rops: int, explain_span: timedelta, rop_minutes: int) -> int:
    """How many ROPs before a new one scoring must see again to publish what a whole day's
    scoring would: an alert's explanation looks back on the rows of its span that alert,
    and whether each of those alerts depends on the consecutive-ROP rule's run before it."""
    explain = math.ceil(explain_span / timedelta(minutes=rop_minutes))
    return max(explain - 1, 0) + max(consecutive_rops - 1, 0)


def load_state(folder: Path) -> RopState | None:
    """The state the last every-ROP run left in `folder`, or None (none yet, or a run that
    died before writing all of it: the next run starts over from the batch)."""
    try:
        meta = json.loads((folder / STATE_FILE).read_text())
        tables = [folder / CONTEXT_FILE, folder / ALERTS_FILE]
        if any(lake.read_metadata(t).get(NEWEST_KEY) != meta["newest"] for t in tables):
            return None  # written by two different runs: not one state
        context, alerts = (pl.read_parquet(t) for t in tables)
    except (OSError, ValueError, KeyError, pl.exceptions.PolarsError):
        return None
    return RopState(datetime.fromisoformat(meta["newest"]), meta["spec_hash"], context, alerts)


def save_state(folder: Path, state: RopState) -> None:
    """Write `state` into `folder`, each file atomically and marked with the newest ROP: a
    crash between two files leaves files of two runs, which `load_state` refuses."""
    folder.mkdir(parents=True, exist_ok=True)
    mark = {NEWEST_KEY: state.newest.isoformat()}
    lake.atomic_write_parquet(state.context, folder / CONTEXT_FILE, mark)
    lake.atomic_write_parquet(state.open_alerts, folder / ALERTS_FILE, mark)
    meta = {"newest": state.newest.isoformat(), "spec_hash": state.spec_hash}
    lake.atomic_write_bytes(folder / STATE_FILE, json.dumps(meta).encode())


def clear_state(folder: Path) -> None:
    """Forget the state: the next every-ROP run starts from the batch."""
    shutil.rmtree(folder, ignore_errors=True)
