"""Feature building speed.

1. 10,000 cells × 7 days in memory: the builder against the pandas reference of the same
   spec and the parquet scan ceiling of the same KPI rows (compute only).
2. One day of 100,000 cells with 7 days of lookback in the lake: `build_day` end to end
   (read the days the spec needs, compute, write the partitions), in a fresh process each
   run so that its peak memory is its own.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import polars as pl

from bench.common import Measurement, peak_rss_mb, record, repeat
from bench.pandas_reference import build_features_pandas
from cellpulse.features.builder import build_features
from cellpulse.features.spec import default_spec
from cellpulse.simulator import SimulationConfig, iter_days


def in_memory(runs: int) -> list[Measurement]:
    spec = default_spec(15)
    kpis = pl.concat([d for _, d in iter_days(SimulationConfig(cells=10_000, days=7, seed=1))])
    with tempfile.TemporaryDirectory(prefix="cellpulse-bench-") as tmp:
        path = Path(tmp) / "kpis.parquet"
        kpis.write_parquet(path)
        rows, scan_times = repeat(lambda: pl.read_parquet(path).height, runs)
    ceiling = Measurement("parquet scan ceiling, 10,000 cells × 7 days", rows, scan_times, 0)
    rows, times = repeat(
        lambda: build_features(kpis, spec, rop_minutes=15, min_denominator=10).height, runs
    )
    ours_rss = peak_rss_mb()
    rows, ref_times = repeat(
        lambda: build_features_pandas(kpis, spec, rop_minutes=15, min_denominator=10).height, 1
    )
    ref = Measurement("pandas groupby-rolling reference (1 run)", rows, ref_times, peak_rss_mb())
    ours = Measurement(f"builder, {len(spec.columns())} features", rows, times, ours_rss)
    return [
        ceiling,
        Measurement(
            ours.name,
            ours.rows,
            ours.seconds,
            ours.peak_rss_mb,
            f"{ref.median_s / ours.median_s:.1f}x the pandas reference, "
            f"{ours.median_s / ceiling.median_s:.1f}x the scan ceiling's time",
        ),
        ref,
    ]


def national_day(runs: int) -> list[Measurement]:
    cells, days = 100_000, 8
    with tempfile.TemporaryDirectory(prefix="cellpulse-bench-") as tmp:
        home = Path(tmp) / "home"
        from cellpulse.settings import Settings

        kpi = Settings(home=home).layout.kpi
        last = date(2026, 1, 1)
        for day, frame in iter_days(SimulationConfig(cells=cells, days=days, seed=1)):
            kpi.replace_day(frame, day)
            last = day
        del frame
        files = kpi.files(last, last)
        rows, scan_times = repeat(lambda: pl.read_parquet(files).height, runs)
        results = [
            Measurement(
                "parquet scan ceiling, 100,000 cells × 1 day", rows, scan_times, peak_rss_mb()
            )
        ]
        seconds, peaks = [], []
        for _ in range(runs):
            out = subprocess.run(
                [sys.executable, "-m", "bench.features", "--build-day", str(home), str(last)],
                check=True,
                capture_output=True,
                text=True,
            )
            measured = json.loads(out.stdout.strip().splitlines()[-1])
            seconds.append(measured["seconds"])
            peaks.append(measured["peak_rss_mb"])
            rows = measured["rows"]
        results.append(
            Measurement(
                "build_day: 100,000 cells, 1 day, 7 days of lookback (read + compute + write)",
                rows,
                seconds,
                max(peaks),
                f"{statistics.median(seconds) / statistics.median(scan_times):.1f}x the scan "
                "ceiling's time; goal: peak < 8 GB",
            )
        )
    return results


def build_day_once(home: str, day: str) -> None:
    """Child process: build one day and print seconds, rows and this process's peak RSS."""
    from cellpulse.features.spec import FeatureParams, spec_for
    from cellpulse.features.store import build_day
    from cellpulse.settings import Settings

    settings = Settings(home=Path(home))
    t0 = time.perf_counter()
    params = FeatureParams.of(settings)
    built = build_day(settings.layout, spec_for(params), date.fromisoformat(day), params)
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "rows": built.rows, "peak_rss_mb": own_peak_mb()}))


def own_peak_mb() -> float:
    """This process's peak RSS since it started (VmHWM). getrusage's maxrss would include
    the parent's peak, which Linux carries across fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return peak_rss_mb()


def main(runs: int = 3) -> None:
    record(
        "Features",
        "python -m bench.run features",
        in_memory(runs) + national_day(runs),
        "In memory: compute only (KPIs already in memory, writing excluded). build_day: a fresh "
        "process per run reads the 100,000 cells' days that the spec needs from the lake, "
        "builds the day region by region and writes its partitions; peak RSS is that "
        "process's. Targets: >= 5 M rows/s, >= 25x the pandas reference, peak < 8 GB.",
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--build-day":
        from cellpulse.runtime import keep_freed_memory

        keep_freed_memory()  # as `cellpulse features` does
        build_day_once(sys.argv[2], sys.argv[3])
    else:
        main()
