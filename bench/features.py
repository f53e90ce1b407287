"""Feature building speed: the polars builder against the pandas reference of the same spec
and the parquet scan ceiling of the same KPI rows (in memory, read excluded)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl

from bench.common import Measurement, peak_rss_mb, record, repeat
from bench.pandas_reference import build_features_pandas
from cellpulse.features.builder import build_features
from cellpulse.features.spec import default_spec
from cellpulse.simulator import SimulationConfig, iter_days


def main(runs: int = 3) -> None:
    spec = default_spec(15)
    kpis = pl.concat([d for _, d in iter_days(SimulationConfig(cells=10_000, days=7, seed=1))])
    with tempfile.TemporaryDirectory(prefix="cellpulse-bench-") as tmp:
        path = Path(tmp) / "kpis.parquet"
        kpis.write_parquet(path)
        rows, scan_times = repeat(lambda: pl.read_parquet(path).height, runs)
    results = [
        Measurement("parquet scan ceiling, 10,000 cells × 7 days", rows, scan_times, peak_rss_mb())
    ]
    rows, times = repeat(
        lambda: build_features(kpis, spec, rop_minutes=15, min_denominator=10).height, runs
    )
    ours = Measurement(
        f"polars builder, {len(spec.columns())} features", rows, times, peak_rss_mb()
    )
    rows, ref_times = repeat(
        lambda: build_features_pandas(kpis, spec, rop_minutes=15, min_denominator=10).height, 1
    )
    ref = Measurement("pandas groupby-rolling reference (1 run)", rows, ref_times, peak_rss_mb())
    ratio = ref.median_s / ours.median_s
    results += [
        Measurement(
            ours.name,
            ours.rows,
            ours.seconds,
            ours.peak_rss_mb,
            f"{ratio:.1f}x the pandas reference",
        ),
        ref,
    ]
    record(
        "Features",
        "python -m bench.run features",
        results,
        "Compute only (KPIs already in memory; writing partitions excluded). Targets: "
        ">= 5 M rows/s and >= 25x the pandas reference.",
    )


if __name__ == "__main__":
    main()
