"""Disk: bytes per row and per cell-day of each lake dataset, before and after housekeeping.

A network of 5,000 cells × 4 days arrives as hourly files and is ingested in one run (each
day one delivery, never compacted by ingest: the case of a backfill or a catch-up), then its
features are built, and each day is scored with small models (trained on 200 cells, not
timed: the size of scores and expected bands does not depend on the models' quality). Then
`cellpulse.housekeeping` runs with the default settings, and every dataset is measured
again. Retention cannot bite on 4 days; its effect on a year of history is computed from
the per-cell-day sizes and the default retention of each dataset."""

from __future__ import annotations

import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from bench.common import record_table
from bench.ingest import NOW
from bench.scoring import table
from cellpulse import housekeeping, lake
from cellpulse.features.builder import build_features
from cellpulse.features.spec import FeatureParams, spec_for
from cellpulse.features.store import build_day, read_features
from cellpulse.ingest import ingest_files
from cellpulse.models.families import anomaly as anomaly_family
from cellpulse.models.families import congestion as congestion_family
from cellpulse.models.params import ModelParams
from cellpulse.settings import Settings, TrainSettings
from cellpulse.simulator import (
    SimulationConfig,
    build_topology,
    draw_events,
    iter_days,
    split_into_files,
)
from cellpulse.window import DayWindow

CELLS, DAYS = 5_000, 4
HISTORY_DAYS = 400  # the default KPI retention: the history a lake holds
# The lake as it was before housekeeping existed (5,000 cells × 9 days): KPIs, features and
# expected bands, all kept, deliveries never compacted.
TODAY_BYTES_PER_CELL_DAY = (1.1e9 + 1.1e9 + 0.75e9) / (5_000 * 9)


def sizes(settings: Settings) -> dict[str, tuple[int, int, int]]:
    """Per dataset: (bytes on disk, rows, cell-days)."""
    out = {}
    for name in housekeeping.DATASETS:
        ds = housekeeping.dataset(settings.layout, name)
        keys = ds.read(columns=["cell_id", "ts"]) if ds.dates() else pl.DataFrame()
        cell_days = (
            keys.select(pl.struct("cell_id", pl.col("ts").dt.date()).n_unique()).item()
            if keys.height
            else 0
        )
        out[name] = (ds.size(), keys.height, cell_days)
    return out


def main(runs: int = 1) -> None:
    del runs  # sizes are not noisy: one pass
    with tempfile.TemporaryDirectory(prefix="cellpulse-bench-") as tmp:
        small_settings = Settings(
            home=Path(tmp) / "small", train=TrainSettings(num_trees=20, early_stopping_rounds=0)
        )
        settings = Settings(home=Path(tmp) / "home")
        spec = spec_for(FeatureParams.of(settings))
        small_cfg = SimulationConfig(cells=200, days=6, seed=2)
        topology = build_topology(small_cfg)
        events = draw_events(topology, small_cfg)
        small_kpis = pl.concat([d for _, d in iter_days(small_cfg, topology, events)])
        small = build_features(small_kpis, spec, rop_minutes=15, min_denominator=10)
        anomaly = anomaly_family.train_anomaly(
            small, events, ModelParams.of(small_settings), spec.hash()
        ).model
        congestion = congestion_family.train_congestion(
            small, small_kpis, ModelParams.of(small_settings), spec.hash()
        ).model

        landing = Path(tmp) / "landing"
        days: list[date] = []
        for day, frame in iter_days(SimulationConfig(cells=CELLS, days=DAYS, seed=1)):
            for name, part in split_into_files(frame, 60):
                lake.atomic_write_parquet(part, landing / name)
            days.append(day)
        t0 = time.perf_counter()
        ingest_files([landing], settings, NOW)
        t_ingest = time.perf_counter() - t0
        for day in days:
            build_day(settings.layout, spec, day, FeatureParams.of(settings))
            first = day - timedelta(days=1) if day > days[0] else day
            features = read_features(settings.layout, DayWindow(first, day), spec)
            scores = table(features, anomaly, congestion, settings)
            in_day = pl.col("ts").dt.date() == day
            settings.layout.scores.replace_day(scores.filter(in_day), day)
            band = anomaly.band(features.filter(in_day))
            settings.layout.expected.replace_day(band, day)
        before = sizes(settings)
        t0 = time.perf_counter()
        outcome = housekeeping.housekeep(settings.layout, settings.housekeeping, NOW)
        t_house = time.perf_counter() - t0
        after = sizes(settings)

    retention = settings.housekeeping.retention_days
    rows: list[list[str]] = []
    per_cell_day = {"before": 0.0, "after": 0.0, "year before": 0.0, "year after": 0.0}
    for name in housekeeping.DATASETS:
        (b_bytes, b_rows, b_cd), (a_bytes, a_rows, a_cd) = before[name], after[name]
        assert b_rows == a_rows, f"{name}: housekeeping changed the rows ({b_rows} → {a_rows})"
        kept = getattr(retention, name) or HISTORY_DAYS
        share = min(kept, HISTORY_DAYS) / HISTORY_DAYS
        per_cell_day["before"] += b_bytes / b_cd
        per_cell_day["after"] += a_bytes / a_cd
        per_cell_day["year before"] += b_bytes / b_cd  # today nothing is ever removed
        per_cell_day["year after"] += a_bytes / a_cd * share
        rows.append(
            [
                name,
                f"{b_rows:,}",
                f"{b_bytes / b_rows:,.0f}",
                f"{a_bytes / a_rows:,.0f}",
                f"{b_bytes / b_cd / 1e3:,.1f}",
                f"{a_bytes / a_cd / 1e3:,.1f}",
                f"{kept}",
                f"{a_bytes / a_cd * share / 1e3:,.1f}",
            ]
        )
    rows.append(
        [
            "all datasets",
            "",
            "",
            "",
            f"{per_cell_day['before'] / 1e3:,.1f}",
            f"{per_cell_day['after'] / 1e3:,.1f}",
            "",
            f"{per_cell_day['year after'] / 1e3:,.1f}",
        ]
    )
    year_after = per_cell_day["year after"]
    record_table(
        "Disk",
        "python -m bench.run disk",
        [
            "dataset",
            "rows",
            "bytes/row before",
            "bytes/row after",
            "KB/cell-day before",
            "KB/cell-day after",
            "retention days",
            "KB per cell-day of a year's history",
        ],
        rows,
        f"{CELLS:,} cells × {DAYS} days ingested in one run (one delivery per day), features "
        f"built, every day scored; then `cellpulse housekeeping` with the default settings "
        f"(ingest {t_ingest:.0f} s, housekeeping {t_house:.1f} s: "
        f"{sum(len(d) for d in outcome.compacted.values())} days compacted). The last column "
        f"spreads each dataset's kept days over {HISTORY_DAYS} days of KPI history (bytes per "
        f"cell-day after housekeeping × retention / {HISTORY_DAYS}). Before housekeeping, with "
        f"nothing ever removed: {per_cell_day['year before'] / 1e3:,.1f} KB per cell-day "
        f"(the lake before housekeeping: {TODAY_BYTES_PER_CELL_DAY / 1e3:,.1f} KB); after: "
        f"{year_after / 1e3:,.1f} KB, "
        f"{year_after / per_cell_day['year before']:.0%} of the measured before and "
        f"{year_after / TODAY_BYTES_PER_CELL_DAY:.0%} of the lake before housekeeping. "
        f"At 100,000 cells × {HISTORY_DAYS} days: "
        f"{year_after * 100_000 * HISTORY_DAYS / 1e12:,.2f} TB.",
    )


if __name__ == "__main__":
    main()
