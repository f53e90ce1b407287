"""kill -9 during ingest, at every write boundary: the lake is always readable, and the re-run
ends identical to a run that was never interrupted — no row lost, none duplicated."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from cellpulse import lake
from cellpulse.ingest import ingest_files
from cellpulse.ledger import Ledger
from cellpulse.settings import IngestSettings
from cellpulse.simulator import DeliveryConfig, SimulationConfig, write_network
from tests.conftest import tiny_settings

CFG = SimulationConfig(
    cells=9,
    days=3,
    seed=8,
    delivery=DeliveryConfig(redelivery_rate=0.1, duplicate_file_rate=0.1, late_file_rate=0.1),
)
SCRIPT = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from cellpulse.ingest import ingest_files
from cellpulse.settings import IngestSettings, Settings
s = Settings(home=sys.argv[1], ingest=IngestSettings(batch_rows=1000, compact_parts=2))
ingest_files([Path(sys.argv[1]) / "landing"], s, datetime(2026, 2, 1, tzinfo=UTC))
"""


def prepared_home(root: Path, name: str) -> Path:
    home = root / name
    settings = tiny_settings(home)
    write_network(CFG, settings.layout.landing, settings.layout.ground_truth, settings.congestion)
    bad = settings.layout.landing / "zz_broken.parquet"
    bad.write_bytes(b"PAR1 truncated")  # a rejected file: its report is a write too
    return home


def run_ingest(home: Path, failpoint: str | None = None) -> int:
    env = {**os.environ}
    env.pop("CELLPULSE_FAILPOINT", None)
    if failpoint:
        env["CELLPULSE_FAILPOINT"] = failpoint
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(home)], env=env, capture_output=True, check=False
    ).returncode


def snapshot(home: Path) -> tuple[pl.DataFrame, list[tuple[str, str, int]]]:
    settings = tiny_settings(home)
    rows = settings.layout.kpi.read().sort("cell_id", "ts")
    with Ledger(settings.layout.ledger) as ledger:
        files = sorted((Path(r.path).name, r.status, r.rows_accepted) for r in ledger.files())
    return rows, files


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    home = prepared_home(tmp_path_factory.mktemp("baseline"), "home")
    assert run_ingest(home) == 0
    return snapshot(home)


@pytest.mark.parametrize(
    "failpoint",
    [
        "lake.before_rename:1",  # inside the first partition write
        "lake.delta_published:3",  # between partitions of a batch
        "ingest.before_ledger:1",  # batch written, not yet recorded
        "ingest.before_ledger:2",  # first batch recorded, second not
        "ingest.quarantine_report_written:1",
        "lake.parts_replaced:1",  # compaction: new parts written, deltas not yet removed
        "lake.delta_removed:1",  # compaction: the oldest delta removed, later ones not
        "ingest.compacted:2",  # between compactions
    ],
)
def test_kill_at_a_write_boundary_then_rerun_equals_uninterrupted(tmp_path, baseline, failpoint):
    home = prepared_home(tmp_path, "home")
    assert run_ingest(home, failpoint) == -signal.SIGKILL
    kpi = tiny_settings(home).layout.lake / "kpi"
    # Whatever readers see is whole (a killed writer's pending delta folder is hidden from
    # them and swept by the next run).
    for part in lake.Dataset(kpi).files():
        lake.scan([part]).collect()
    lake.Dataset(kpi).read()
    assert run_ingest(home) == 0
    rows, files = snapshot(home)
    assert rows.equals(baseline[0])
    assert files == baseline[1]
    assert not list(kpi.rglob("*.tmp"))  # a killed writer's temporary file is cleaned up


def test_kill_at_random_moments_never_loses_or_duplicates(tmp_path, baseline):
    home = prepared_home(tmp_path, "home")
    for delay in (0.4, 0.8, 1.2):
        proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(home)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert run_ingest(home) == 0
    rows, files = snapshot(home)
    assert rows.equals(baseline[0]) and files == baseline[1]


def test_in_process_and_subprocess_agree(tmp_path, baseline):
    home = prepared_home(tmp_path, "home")
    settings = tiny_settings(home).model_copy(
        update={"ingest": IngestSettings(batch_rows=1000, compact_parts=2)}
    )
    from datetime import UTC, datetime

    ingest_files([settings.layout.landing], settings, datetime(2026, 2, 1, tzinfo=UTC))
    rows, _ = snapshot(home)
    assert rows.equals(baseline[0])
    shutil.rmtree(home)
