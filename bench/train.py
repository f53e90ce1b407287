"""Training time and peak memory by network size.

For each size in CELLPULSE_BENCH_TRAIN_CELLS (comma-separated, default 1000) × 14 days
(CELLPULSE_BENCH_TRAIN_DAYS): simulate, ingest and build features with the CLI, then time
`cellpulse train` in a process of its own, whose peak RSS (wait4, as `/usr/bin/time -v`
reports it) is the figure. Homes go under CELLPULSE_BENCH_DIR (default: a temporary
folder, removed after); a home there that already holds features of that size is reused.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Measurement, record

GOAL = "goal: peak < 8 GB, flat in cells; 20,000 × 14 days < 15 min"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cellpulse.cli", *args]


def prepare(home: Path, cells: int, days: int) -> None:
    """A home with `cells` × `days` of features (kept if it has them already)."""
    if (home / "lake" / "features").is_dir():
        return
    for step in (
        ["simulate", "--cells", str(cells), "--days", str(days)],
        ["ingest"],
        ["features"],
    ):
        subprocess.run(cli(*step, "--home", str(home)), check=True, capture_output=True)
    shutil.rmtree(home / "landing", ignore_errors=True)  # ingested: only the lake is read


def train_once(home: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and output of one `cellpulse train` run."""
    env = os.environ | {"COLUMNS": "250"}  # the summary's lines unwrapped, to be parsed
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cli("train", "--home", str(home)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"cellpulse train failed on {home}:\n{out[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, out


def sampled_line(out: str) -> tuple[int, str]:
    """The feature rows of the window and the summary's sampling line."""
    found = re.search(r"training data: (sampled [\d,]+ of ([\d,]+) .*)", out)
    if found is None:
        return 0, ""
    return int(found.group(2).replace(",", "")), found.group(1)


def sizes() -> list[int]:
    return [int(s) for s in os.environ.get("CELLPULSE_BENCH_TRAIN_CELLS", "1000").split(",")]


def main(runs: int = 1) -> None:
    days = int(os.environ.get("CELLPULSE_BENCH_TRAIN_DAYS", "14"))
    given = os.environ.get("CELLPULSE_BENCH_DIR")
    root = Path(given) if given else Path(tempfile.mkdtemp(prefix="cellpulse-bench-"))
    results, lines = [], []
    try:
        for cells in sizes():
            home = root / f"train-{cells}x{days}"
            prepare(home, cells, days)
            seconds, peaks, rows = [], [], 0
            for _ in range(runs):
                took, peak, out = train_once(home)
                seconds.append(took)
                peaks.append(peak)
                rows, line = sampled_line(out)
            lines.append(f"{cells:,} cells: {line}")
            results.append(
                Measurement(
                    f"cellpulse train, {cells:,} cells × {days} days (both families)",
                    rows,
                    seconds,
                    max(peaks),
                    GOAL,
                )
            )
    finally:
        if not given:
            shutil.rmtree(root, ignore_errors=True)
    sized = ",".join(str(c) for c in sizes())
    record(
        "Training",
        f"CELLPULSE_BENCH_TRAIN_CELLS={sized} python -m bench.run train",
        results,
        "Rows: feature rows of the fitting days; training samples `train.max_train_rows` of them "
        "while reading, from at most `train.max_train_cells` cells, and judges on whole "
        "hold-out days of `train.holdout_cells` cells. Peak RSS is the train process's "
        "(wait4). Simulate, ingest and features are not timed. What each run sampled:\n\n"
        + "\n".join(f"- {line}" for line in lines),
    )


if __name__ == "__main__":
    main()
