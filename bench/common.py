"""Shared benchmark plumbing: repeat, take medians, describe the machine, record results."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


@dataclass(frozen=True)
class Measurement:
    name: str
    rows: int
    seconds: list[float]
    peak_rss_mb: float
    reference: str = ""

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.median_s if self.median_s else float("nan")


def repeat(
    fn: Callable[[], int], runs: int, setup: Callable[[], object] | None = None
) -> tuple[int, list[float]]:
    """Run `fn` (which returns the rows it handled) `runs` times; wall seconds of each.
    `setup` (untimed) runs before each, e.g. to remove the previous run's output."""
    times, rows = [], 0
    for _ in range(runs):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        rows = fn()
        times.append(time.perf_counter() - t0)
    return rows, times


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}"
    )


def commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parent,
    )
    return out.stdout.strip() or "unknown"


def record(section: str, command: str, rows: list[Measurement], notes: str = "") -> None:
    """Replace `section` in bench/RESULTS.md with a fresh table (other sections stay)."""
    record_table(
        section,
        command,
        ["benchmark", "rows", "median wall s", "rows/s", "runs", "peak RSS MB", "reference"],
        [
            [
                m.name,
                f"{m.rows:,}",
                f"{m.median_s:.2f}",
                f"{m.rows_per_s:,.0f}",
                str(len(m.seconds)),
                f"{m.peak_rss_mb:,.0f}",
                m.reference,
            ]
            for m in rows
        ],
        notes,
    )


def record_table(
    section: str, command: str, header: list[str], rows: list[list[str]], notes: str = ""
) -> None:
    """Replace `section` in bench/RESULTS.md with `rows` under `header` (first column
    left-aligned, the others right-aligned, except a last column named "reference")."""
    align = ["---"] + ["---:"] * (len(header) - 1)
    if header[-1] == "reference":
        align[-1] = "---"
    lines = [
        f"## {section}",
        "",
        f"`{command}` — commit {commit()}, {time.strftime('%Y-%m-%d')}, {machine()}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(align) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if notes:
        lines += ["", notes]
    block = "\n".join(lines) + "\n"
    text = (
        RESULTS.read_text()
        if RESULTS.exists()
        else (
            "# Benchmark results\n\nRecorded by `make bench` (or `python -m bench.run NAME`). "
            "Medians over repeated runs; the machine is shared, so compare ratios more than "
            "absolute times.\n"
        )
    )
    start = text.find(f"## {section}\n")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + block + (text[end + 1 :] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    RESULTS.write_text(text)
    print(block, file=sys.stdout)
