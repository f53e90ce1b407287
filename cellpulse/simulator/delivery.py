"""Writing a simulated network the way an OSS export delivers it: hourly PM files in the
landing folder (late, twice, or first wrong and then corrected, if asked), plus the ground
truth a model is judged by."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from cellpulse import lake, progress
from cellpulse.contract import DIMENSIONS, KEYS, MEASUREMENT_NAMES
from cellpulse.features.targets import congestion_flags, congestion_periods
from cellpulse.layout import TRUTH_CONGESTION_FILE, TRUTH_EVENTS_FILE, TRUTH_TOPOLOGY_FILE
from cellpulse.settings import CongestionRule
from cellpulse.simulator.config import DeliveryConfig, SimulationConfig
from cellpulse.simulator.events import draw_events
from cellpulse.simulator.kpis import simulate_day
from cellpulse.simulator.topology import Topology, build_topology

# What a first, faulty delivery gets wrong: counters collected from part of the node only.
PARTIAL_COUNTERS = (
    "dl_volume_mbit",
    "ul_volume_mbit",
    "rrc_estab_att",
    "rrc_estab_succ",
    "drb_estab_att",
    "drb_estab_succ",
    "drb_rel_total",
    "drb_rel_abnormal",
    "ho_att",
    "ho_succ",
)


def iter_days(
    cfg: SimulationConfig, topo: Topology | None = None, events: pl.DataFrame | None = None
) -> Iterator[tuple[date, pl.DataFrame]]:
    """Yield (date, that day's KPIs as delivered: the configured measurements only) for the
    whole simulation."""
    for day, frame in _full_days(cfg, topo, events):
        yield day, delivered(frame, cfg)


def _full_days(
    cfg: SimulationConfig, topo: Topology | None = None, events: pl.DataFrame | None = None
) -> Iterator[tuple[date, pl.DataFrame]]:
    """Every simulated measurement of every day, delivered or not."""
    topo = topo if topo is not None else build_topology(cfg)
    events = events if events is not None else draw_events(topo, cfg)
    for day in range(cfg.days):
        yield cfg.start + timedelta(days=day), simulate_day(topo, events, cfg, day)


def delivered(frame: pl.DataFrame, cfg: SimulationConfig) -> pl.DataFrame:
    """Keys, dimensions and the measurements the export delivers (`cfg.kpis`)."""
    if cfg.kpis is None:
        return frame
    return frame.select(*KEYS, *DIMENSIONS, *cfg.delivered)


def split_into_files(
    day_frame: pl.DataFrame, file_minutes: int
) -> Iterator[tuple[str, pl.DataFrame]]:
    """Cut one day into OSS-style export files, named after 3GPP TS 32.432:
    A<date>.<start>+0000-<end>+0000_<sender>.parquet"""
    period = pl.col("ts").dt.truncate(f"{file_minutes}m")
    for (start,), part in day_frame.with_columns(period.alias("_file")).group_by(
        "_file", maintain_order=True
    ):
        assert isinstance(start, datetime)
        end = start + timedelta(minutes=file_minutes)
        name = f"A{start:%Y%m%d.%H%M}+0000-{end:%H%M}+0000_cellpulse-sim.parquet"
        yield name, part.drop("_file")


def _faulty_copy(part: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """A first delivery with a third of its rows under-counted (half the counters)."""
    wrong = pl.Series(rng.random(part.height) < 1 / 3)
    return part.with_columns(
        pl.when(wrong).then((pl.col(c) * 0.5).floor()).otherwise(pl.col(c)).alias(c)
        for c in PARTIAL_COUNTERS
        if c in part.columns
    )


@dataclass(frozen=True)
class SimulationSummary:
    cells: int
    sites: int
    days: int
    rows: int
    files: int
    late_files: int
    redelivered_files: int
    duplicate_files: int
    events: pl.DataFrame
    congestion_periods: int
    landing_dir: Path
    truth_dir: Path
    kpis: tuple[str, ...] = MEASUREMENT_NAMES  # the measurements written


def write_network(
    cfg: SimulationConfig,
    landing_dir: Path,
    truth_dir: Path,
    rule: CongestionRule,
    events: pl.DataFrame | None = None,
) -> SimulationSummary:
    """Simulate and write landing files, ground-truth events, congestion periods and the
    topology. Congestion periods use the pipeline's own congestion rule. `events` replaces
    the randomly drawn events (to place a known fault).

    With delivery realism on, some files arrive late (written after all the on-time ones),
    some twice under another name, and some first with under-counted counters and then
    again, corrected: after ingest, the lake must hold exactly the true values."""
    topo = build_topology(cfg)
    events = events if events is not None else draw_events(topo, cfg)
    tally, truth = _write_landing(cfg, topo, events, landing_dir)
    periods = _write_truth(cfg, topo, events, truth, rule, truth_dir)
    return SimulationSummary(
        cfg.cells,
        len(set(topo.site_id)),
        cfg.days,
        tally.rows,
        tally.files,
        tally.late,
        tally.redelivered,
        tally.duplicated,
        events,
        periods.height,
        landing_dir,
        truth_dir,
        cfg.delivered,
    )


@dataclass
class _Tally:
    """What the landing folder received: rows, files, and how many came late, first wrong
    (then corrected) or twice."""

    rows: int = 0
    files: int = 0
    late: int = 0
    redelivered: int = 0
    duplicated: int = 0


def _write_landing(
    cfg: SimulationConfig, topo: Topology, events: pl.DataFrame, landing_dir: Path
) -> tuple[_Tally, pl.DataFrame]:
    """Every day's delivered files in the landing folder, the deferred ones last; returns
    the tally and the true KPIs the congestion truth is judged on (every cell and ROP,
    whatever is delivered)."""
    rng = np.random.default_rng([cfg.seed, 3])
    tally = _Tally()
    deferred: list[tuple[str, pl.DataFrame]] = []
    narrow = []
    days = _full_days(cfg, topo, events)
    for _, day in progress.track(days, "simulate: days", total=cfg.days):
        for name, part in split_into_files(delivered(day, cfg), cfg.delivery.file_minutes):
            deferred += _deliver(name, part, cfg.delivery, rng, landing_dir, tally)
        tally.rows += day.height
        # Ground truth is the network's true state: every simulated KPI, whatever is delivered.
        narrow.append(
            day.select("cell_id", "ts", "prb_util_dl_pct", "dl_ue_thp_mbps", "active_ue_dl_mean")
        )
    for name, part in deferred:  # after everything else: these arrive late
        lake.atomic_write_parquet(part, landing_dir / name)
    return tally, pl.concat(narrow)


def _deliver(
    name: str,
    part: pl.DataFrame,
    d: DeliveryConfig,
    rng: np.random.Generator,
    landing_dir: Path,
    tally: _Tally,
) -> list[tuple[str, pl.DataFrame]]:
    """One file delivered as the feed's realism has it: written now (once, or first with
    under-counted counters), or held back; returns the files to write after all others
    (late ones, corrections, duplicates), and counts them in `tally`."""
    deferred = []
    roll = rng.random(3)
    if roll[0] < d.redelivery_rate:
        lake.atomic_write_parquet(_faulty_copy(part, rng), landing_dir / name)
        deferred.append((name.replace(".parquet", "_r1.parquet"), part))
        tally.redelivered += 1
    elif roll[1] < d.late_file_rate:
        deferred.append((name, part))
        tally.late += 1
    else:
        lake.atomic_write_parquet(part, landing_dir / name)
    if roll[2] < d.duplicate_file_rate:
        deferred.append((name.replace(".parquet", "_dup.parquet"), part))
        tally.duplicated += 1
    tally.files += 1
    return deferred


def _write_truth(
    cfg: SimulationConfig,
    topo: Topology,
    events: pl.DataFrame,
    truth: pl.DataFrame,
    rule: CongestionRule,
    truth_dir: Path,
) -> pl.DataFrame:
    """The ground truth a model is judged by: the events, the congestion periods the
    pipeline's rule finds in the true KPIs, and the topology; returns the periods."""
    flags = congestion_flags(truth, rule, cfg.rop_minutes)
    periods = congestion_periods(flags, cfg.rop_minutes)
    lake.atomic_write_parquet(events, truth_dir / TRUTH_EVENTS_FILE)
    lake.atomic_write_parquet(periods, truth_dir / TRUTH_CONGESTION_FILE)
    lake.atomic_write_parquet(topo.frame(), truth_dir / TRUTH_TOPOLOGY_FILE)
    return periods
