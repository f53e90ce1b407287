"""Injected events with ground truth: which cell, what, from when to when, how bad."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl

from cellpulse.simulator.config import EVENT_SHAPES, EVENT_TYPES, SimulationConfig
from cellpulse.simulator.profiles import AREA_TYPES
from cellpulse.simulator.topology import Topology

RAMPED = ("gradual_degradation", "slow_degradation")  # worsen from their start to their end
EVENT_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "cell_id": pl.String(),
    "site_id": pl.String(),
    "type": pl.String(),
    "kind": pl.String(),
    "start": pl.Datetime("us", "UTC"),
    "end": pl.Datetime("us", "UTC"),
    "severity": pl.Float64(),
}


def make_event(
    topo: Topology,
    cell: int,
    kind: str,
    start: datetime,
    hours: float,
    severity: float | None = None,
    event_id: str = "E-manual",
) -> dict[str, object]:
    """One ground-truth event row, for placing a known fault."""
    lo, hi = EVENT_SHAPES[kind][2]
    return {
        "event_id": event_id,
        "cell_id": topo.cell_id[cell],
        "site_id": topo.site_id[cell],
        "type": kind,
        "kind": "load" if kind == "surge" else "fault",
        "start": start,
        "end": start + timedelta(hours=hours),
        "severity": severity if severity is not None else (lo + hi) / 2,
    }


def draw_events(topo: Topology, cfg: SimulationConfig) -> pl.DataFrame:
    """Random events at the configured rate. Never on the first day, so every cell has a
    normal day to be compared with. Surges prefer venues and the evening."""
    rng = np.random.default_rng([cfg.seed, 1])
    n = rng.poisson(cfg.events_per_cell_day * topo.size * max(cfg.days - 1, 0))
    weights = np.array([cfg.event_weights.get(t, 0.0) for t in EVENT_TYPES], dtype=float)
    rows = []
    if n and weights.sum() > 0:
        types = rng.choice(len(EVENT_TYPES), size=n, p=weights / weights.sum())
        venue = np.flatnonzero(topo.area == AREA_TYPES.index("venue"))
        total = cfg.days * cfg.rops_per_day
        for i, t in enumerate(types):
            kind = EVENT_TYPES[t]
            _, (dmin, dmax), (smin, smax) = cfg.event_shapes.get(kind, EVENT_SHAPES[kind])
            if kind == "surge" and venue.size and rng.random() < 0.7:
                cell = int(rng.choice(venue))
            else:
                cell = int(rng.integers(topo.size))
            rops = max(1, round(rng.uniform(dmin, dmax) * 60 / cfg.rop_minutes))
            first = int(rng.integers(cfg.rops_per_day, total))
            if kind == "surge":  # crowds gather in the evening
                day = first // cfg.rops_per_day
                first = day * cfg.rops_per_day + int(rng.integers(16, 21) * 60 / cfg.rop_minutes)
            last = min(first + rops, total)
            rows.append(
                make_event(
                    topo,
                    cell,
                    kind,
                    cfg.start_ts + timedelta(minutes=first * cfg.rop_minutes),
                    (last - first) * cfg.rop_minutes / 60,
                    float(rng.uniform(smin, smax)),
                    f"E{i:05d}",
                )
            )
    return pl.DataFrame(rows, schema=EVENT_SCHEMA)


def event_masks(
    topo: Topology, events: pl.DataFrame, cfg: SimulationConfig, day: int
) -> dict[str, np.ndarray]:
    """Per event type, the severity active at each (cell, ROP) of this day, 0 where none.
    A gradual or slow degradation ramps from nothing at its start to full severity at its
    end."""
    r = cfg.rops_per_day
    masks = {t: np.zeros((topo.size, r)) for t in EVENT_TYPES}
    if events.is_empty():
        return masks
    index = {c: i for i, c in enumerate(topo.cell_id)}
    day_start = cfg.start_ts + timedelta(days=day)
    rop = timedelta(minutes=cfg.rop_minutes)
    for ev in events.iter_rows(named=True):
        a = (ev["start"] - day_start) // rop
        b = (ev["end"] - day_start) // rop
        lo, hi = max(a, 0), min(b, r)
        if lo >= hi or ev["cell_id"] not in index:
            continue
        value: np.ndarray | float = ev["severity"]
        if ev["type"] in RAMPED:
            value = ev["severity"] * (np.arange(lo, hi) - a + 1) / max(b - a, 1)
        masks[ev["type"]][index[ev["cell_id"]], lo:hi] = value
    return masks
