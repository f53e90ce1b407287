"""A seeded synthetic RAN: topology, a causal load model, KPI counters and injected events.

The chain is causal, as in a real network: demand (users and offered load, shaped by the area
type's daily and weekly profile) meets cell capacity (band, CQI); PRB utilisation follows;
user throughput falls as load approaches capacity (processor-sharing: thp ~ peak * (1 - load));
accessibility and retainability degrade under overload. Counters are drawn as counts
(Poisson / binomial), so ratios are noisy on quiet cells exactly as in real networks.

Everything is vectorised over (cells x ROPs of one day) and generated day by day from a
per-day random stream, so any day can be produced alone and a national network fits in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from cellpulse import lake, progress
from cellpulse.contract import MEASUREMENT_NAMES
from cellpulse.features.targets import congestion_flags, congestion_periods
from cellpulse.settings import CongestionRule

AREA_TYPES = ("business", "residential", "transport", "rural", "venue")
AREA_WEIGHTS = (0.2, 0.38, 0.1, 0.22, 0.1)

# Hourly load shape per area type (0..1, peak = 1), weekday and weekend.
_P = np.array
PROFILES: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "business": (
        _P(
            [
                0.08,
                0.05,
                0.04,
                0.04,
                0.05,
                0.1,
                0.25,
                0.5,
                0.8,
                0.95,
                1,
                1,
                0.95,
                0.97,
                1,
                0.97,
                0.9,
                0.75,
                0.5,
                0.35,
                0.28,
                0.22,
                0.16,
                0.11,
            ]
        ),
        _P(
            [
                0.08,
                0.05,
                0.04,
                0.04,
                0.04,
                0.05,
                0.08,
                0.12,
                0.18,
                0.24,
                0.28,
                0.3,
                0.3,
                0.3,
                0.28,
                0.26,
                0.24,
                0.22,
                0.2,
                0.18,
                0.16,
                0.14,
                0.12,
                0.1,
            ]
        ),
    ),
    "residential": (
        _P(
            [
                0.25,
                0.15,
                0.1,
                0.08,
                0.08,
                0.12,
                0.25,
                0.4,
                0.42,
                0.38,
                0.36,
                0.38,
                0.42,
                0.42,
                0.42,
                0.45,
                0.55,
                0.68,
                0.82,
                0.93,
                1,
                0.95,
                0.75,
                0.45,
            ]
        ),
        _P(
            [
                0.3,
                0.2,
                0.12,
                0.1,
                0.08,
                0.1,
                0.15,
                0.28,
                0.45,
                0.58,
                0.66,
                0.7,
                0.72,
                0.72,
                0.7,
                0.7,
                0.72,
                0.78,
                0.86,
                0.95,
                1,
                0.95,
                0.78,
                0.5,
            ]
        ),
    ),
    "transport": (
        _P(
            [
                0.1,
                0.05,
                0.03,
                0.03,
                0.08,
                0.3,
                0.75,
                1,
                0.9,
                0.6,
                0.5,
                0.5,
                0.55,
                0.5,
                0.5,
                0.6,
                0.85,
                1,
                0.85,
                0.6,
                0.45,
                0.35,
                0.25,
                0.15,
            ]
        ),
        _P(
            [
                0.1,
                0.06,
                0.04,
                0.03,
                0.05,
                0.1,
                0.2,
                0.3,
                0.4,
                0.5,
                0.55,
                0.58,
                0.6,
                0.6,
                0.58,
                0.55,
                0.52,
                0.5,
                0.45,
                0.4,
                0.35,
                0.3,
                0.22,
                0.15,
            ]
        ),
    ),
    "rural": (
        _P(
            [
                0.2,
                0.12,
                0.08,
                0.06,
                0.06,
                0.1,
                0.25,
                0.45,
                0.55,
                0.55,
                0.55,
                0.58,
                0.6,
                0.58,
                0.56,
                0.6,
                0.68,
                0.8,
                0.92,
                1,
                0.98,
                0.85,
                0.6,
                0.35,
            ]
        ),
        _P(
            [
                0.22,
                0.14,
                0.1,
                0.07,
                0.06,
                0.08,
                0.15,
                0.3,
                0.5,
                0.62,
                0.68,
                0.7,
                0.7,
                0.68,
                0.66,
                0.68,
                0.74,
                0.84,
                0.94,
                1,
                0.98,
                0.86,
                0.62,
                0.38,
            ]
        ),
    ),
    "venue": (
        _P(
            [
                0.1,
                0.06,
                0.04,
                0.03,
                0.03,
                0.05,
                0.1,
                0.2,
                0.3,
                0.35,
                0.38,
                0.4,
                0.42,
                0.4,
                0.38,
                0.4,
                0.45,
                0.55,
                0.7,
                0.85,
                1,
                0.9,
                0.6,
                0.3,
            ]
        ),
        _P(
            [
                0.15,
                0.08,
                0.05,
                0.04,
                0.03,
                0.05,
                0.08,
                0.15,
                0.3,
                0.45,
                0.6,
                0.7,
                0.75,
                0.75,
                0.75,
                0.8,
                0.85,
                0.9,
                0.95,
                1,
                1,
                0.9,
                0.65,
                0.35,
            ]
        ),
    ),
}
PEAK_USERS = {"business": 70, "residential": 55, "transport": 90, "rural": 18, "venue": 35}
HANDOVERS_PER_USER = {
    "business": 0.4,
    "residential": 0.2,
    "transport": 1.5,
    "rural": 0.3,
    "venue": 0.3,
}


@dataclass(frozen=True)
class Band:
    name: str
    rat: str
    prbs: int
    peak_ue_dl_mbps: float  # what one user gets on an empty cell with good radio
    peak_ue_ul_mbps: float
    cell_capacity_mbps: float


BANDS = {
    "n78": Band("n78", "NR", 273, 300.0, 50.0, 700.0),
    "B3": Band("B3", "LTE", 100, 80.0, 25.0, 150.0),
    "B20": Band("B20", "LTE", 50, 40.0, 15.0, 75.0),
}

# Fault events degrade service; load events (surges) are why cells congest.
FAULT_TYPES = (
    "outage",
    "sleeping_cell",
    "throughput_degradation",
    "accessibility_drop",
    "retainability_drop",
    "interference",
)
EVENT_TYPES = (*FAULT_TYPES, "surge")
# Relative frequency, duration range in hours, severity range.
EVENT_SHAPES: dict[str, tuple[float, tuple[float, float], tuple[float, float]]] = {
    "outage": (1.0, (1, 8), (1.0, 1.0)),
    "sleeping_cell": (0.6, (6, 36), (0.9, 0.99)),
    "throughput_degradation": (1.0, (2, 24), (0.5, 0.85)),
    "accessibility_drop": (1.0, (2, 12), (0.15, 0.5)),
    "retainability_drop": (0.8, (2, 12), (0.04, 0.15)),
    "interference": (0.8, (3, 24), (10.0, 20.0)),
    "surge": (1.5, (2, 5), (1.6, 2.6)),
}


@dataclass(frozen=True)
class SimulationConfig:
    """What network to simulate. Same config and seed, same bytes out."""

    cells: int = 200
    days: int = 14
    start: date = date(2026, 1, 5)
    seed: int = 7
    rop_minutes: int = 15
    regions: tuple[str, ...] = ("north", "south")
    events_per_cell_day: float = 0.012
    missing_rop_rate: float = 0.0
    file_minutes: int = 60
    event_weights: dict[str, float] = field(
        default_factory=lambda: {t: s[0] for t, s in EVENT_SHAPES.items()}
    )

    @property
    def rops_per_day(self) -> int:
        return 1440 // self.rop_minutes

    @property
    def start_ts(self) -> datetime:
        return datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)


@dataclass(frozen=True)
class Topology:
    """Static facts per cell, arrays aligned by cell index."""

    cell_id: np.ndarray
    site_id: np.ndarray
    region: np.ndarray
    band: np.ndarray
    rat: np.ndarray
    area: np.ndarray  # index into AREA_TYPES
    site_index: np.ndarray
    peak_load: np.ndarray  # offered load at the busiest hour, as a fraction of capacity
    peak_users: np.ndarray
    base_cqi: np.ndarray

    @property
    def size(self) -> int:
        return len(self.cell_id)

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "cell_id": self.cell_id,
                "site_id": self.site_id,
                "region": self.region,
                "rat": self.rat,
                "band": self.band,
                "area_type": [AREA_TYPES[a] for a in self.area],
            }
        )


def build_topology(cfg: SimulationConfig) -> Topology:
    """Sites with three sectors; area type and band per site; load and radio per cell."""
    rng = np.random.default_rng([cfg.seed, 0])
    n_sites = -(-cfg.cells // 3)
    site_area = rng.choice(len(AREA_TYPES), size=n_sites, p=AREA_WEIGHTS)
    site_x = rng.uniform(0, 1, n_sites)
    site_region = np.array(cfg.regions)[
        np.minimum((site_x * len(cfg.regions)).astype(int), len(cfg.regions) - 1)
    ]
    rural = site_area == AREA_TYPES.index("rural")
    site_band = np.where(
        rural, rng.choice(["B20", "B3"], n_sites), rng.choice(["n78", "B3"], n_sites, p=[0.7, 0.3])
    )
    site_index = np.arange(cfg.cells) // 3
    sector = np.arange(cfg.cells) % 3 + 1
    site_id = np.array([f"S{i:05d}" for i in range(n_sites)])[site_index]
    band = site_band[site_index]
    cell_id = np.char.add(
        np.char.add(np.char.add(site_id, "-"), sector.astype(str)), np.char.add("-", band)
    )
    area = site_area[site_index]
    users_scale = np.array([PEAK_USERS[AREA_TYPES[a]] for a in area])
    return Topology(
        cell_id=cell_id.astype(object),
        site_id=site_id.astype(object),
        region=site_region[site_index].astype(object),
        band=band.astype(object),
        rat=np.array([BANDS[b].rat for b in band], dtype=object),
        area=area,
        site_index=site_index,
        # Most cells peak well below capacity; a few busy ones brush against it.
        peak_load=np.clip(rng.beta(5, 3.2, cfg.cells) * 1.05, 0.1, 0.98),
        peak_users=users_scale * rng.lognormal(0, 0.35, cfg.cells),
        base_cqi=np.clip(rng.normal(10.5, 1.0, cfg.cells), 6, 14),
    )


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
    """Ground-truth events: type, cell, [start, end), severity. Never on the first day, so
    every cell has a normal day to be compared with."""
    rng = np.random.default_rng([cfg.seed, 1])
    n = rng.poisson(cfg.events_per_cell_day * topo.size * max(cfg.days - 1, 0))
    weights = np.array([cfg.event_weights.get(t, 0.0) for t in EVENT_TYPES], dtype=float)
    rows = []
    if n and weights.sum() > 0:
        types = rng.choice(len(EVENT_TYPES), size=n, p=weights / weights.sum())
        venue = np.flatnonzero(topo.area == AREA_TYPES.index("venue"))
        for i, t in enumerate(types):
            kind = EVENT_TYPES[t]
            _, (dmin, dmax), (smin, smax) = EVENT_SHAPES[kind]
            cell = (
                int(rng.choice(venue))
                if kind == "surge" and venue.size and rng.random() < 0.7
                else int(rng.integers(topo.size))
            )
            rops = max(1, round(rng.uniform(dmin, dmax) * 60 / cfg.rop_minutes))
            first = int(rng.integers(cfg.rops_per_day, cfg.days * cfg.rops_per_day))
            if kind == "surge":  # crowds gather in the evening
                day = first // cfg.rops_per_day
                first = day * cfg.rops_per_day + int(rng.integers(16, 21) * 60 / cfg.rop_minutes)
            last = min(first + rops, cfg.days * cfg.rops_per_day)
            rows.append(
                {
                    "event_id": f"E{i:05d}",
                    "cell_id": topo.cell_id[cell],
                    "site_id": topo.site_id[cell],
                    "type": kind,
                    "kind": "load" if kind == "surge" else "fault",
                    "start": cfg.start_ts + timedelta(minutes=first * cfg.rop_minutes),
                    "end": cfg.start_ts + timedelta(minutes=last * cfg.rop_minutes),
                    "severity": float(rng.uniform(smin, smax)),
                }
            )
    return pl.DataFrame(rows, schema=EVENT_SCHEMA)


def _event_masks(
    topo: Topology, events: pl.DataFrame, cfg: SimulationConfig, day: int
) -> dict[str, np.ndarray]:
    """Per event type, the severity active at each (cell, ROP) of this day (0 = none)."""
    r = cfg.rops_per_day
    masks = {t: np.zeros((topo.size, r)) for t in EVENT_TYPES}
    index = {c: i for i, c in enumerate(topo.cell_id)}
    day_start = cfg.start_ts + timedelta(days=day)
    for ev in events.iter_rows(named=True):
        a = int((ev["start"] - day_start).total_seconds() // 60 // cfg.rop_minutes)
        b = int((ev["end"] - day_start).total_seconds() // 60 // cfg.rop_minutes)
        a, b = max(a, 0), min(b, r)
        if a < b:
            masks[ev["type"]][index[ev["cell_id"]], a:b] = ev["severity"]
    return masks


def _profile(topo: Topology, cfg: SimulationConfig, day: int) -> np.ndarray:
    """Load shape (cells x ROPs), 0..1, from the area type's weekday or weekend curve."""
    weekday = (cfg.start + timedelta(days=day)).weekday()
    hours = (np.arange(cfg.rops_per_day) + 0.5) * cfg.rop_minutes / 60
    out = np.empty((topo.size, cfg.rops_per_day))
    for a, name in enumerate(AREA_TYPES):
        curve = PROFILES[name][1 if weekday >= 5 else 0]
        xs = np.arange(25) + 0.5
        shape = np.interp(hours, xs, np.append(curve, curve[0]), period=24)
        out[topo.area == a] = shape
    return out


def simulate_day(
    topo: Topology, events: pl.DataFrame, cfg: SimulationConfig, day: int
) -> pl.DataFrame:
    """All KPIs of one day of the network, contract-shaped, sorted by (cell_id, ts)."""
    rng = np.random.default_rng([cfg.seed, 2, day])
    c, r = topo.size, cfg.rops_per_day
    rop_s = cfg.rop_minutes * 60.0
    scale = cfg.rop_minutes / 15.0  # counters per ROP scale with its length
    ev = _event_masks(topo, events, cfg, day)
    outage = ev["outage"] > 0
    sleeping = ev["sleeping_cell"] > 0

    shape = _profile(topo, cfg, day)
    day_level = rng.lognormal(0, 0.05, (c, 1))  # some days are simply busier
    users = (
        topo.peak_users[:, None] * (0.06 + 0.94 * shape) * day_level * rng.lognormal(0, 0.1, (c, r))
    )
    load = (
        topo.peak_load[:, None] * (0.04 + 0.96 * shape) * day_level * rng.lognormal(0, 0.08, (c, r))
    )

    surge = ev["surge"]
    users = np.where(surge > 0, users * np.maximum(surge, 1), users)
    load = np.where(surge > 0, load * np.maximum(surge, 1), load)
    # A dead or sleeping cell's users camp on its site's other sectors.
    lost = outage | sleeping
    if lost.any():
        absorbed = np.zeros((topo.site_index.max() + 1, r))
        np.add.at(absorbed, topo.site_index, lost.astype(float))
        share = 1 + 0.3 * absorbed[topo.site_index] * ~lost
        users, load = users * share, load * share
    users = np.where(sleeping, users * (1 - ev["sleeping_cell"]), users)
    load = np.where(sleeping, load * (1 - ev["sleeping_cell"]) * 0.5, load)

    band = [BANDS[b] for b in topo.band]
    capacity = np.array([b.cell_capacity_mbps for b in band])[:, None]
    peak_ue = np.array([b.peak_ue_dl_mbps for b in band])[:, None]
    peak_ue_ul = np.array([b.peak_ue_ul_mbps for b in band])[:, None]
    prbs = np.array([b.prbs for b in band], dtype=float)[:, None]

    interference = ev["interference"]
    cqi = topo.base_cqi[:, None] - 1.2 * np.minimum(load, 1) + rng.normal(0, 0.35, (c, r))
    cqi = np.clip(cqi - np.where(interference > 0, interference / 5, 0), 1, 15)
    radio = cqi / topo.base_cqi[:, None]
    # Offered load relative to what the radio conditions let the cell carry.
    rho = load / np.maximum(radio, 0.2)
    prb_util = np.clip(100 * rho * rng.normal(1, 0.03, (c, r)), 0, 100)
    served_mbps = np.minimum(rho, 1) * capacity * radio
    thp_degr = ev["throughput_degradation"]
    served_mbps = served_mbps * np.where(thp_degr > 0, 1 - 0.6 * thp_degr, 1)
    dl_volume = served_mbps * rop_s * rng.lognormal(0, 0.05, (c, r))
    # Processor sharing: per-user throughput shrinks with (1 - load), to a trickle in overload.
    dl_thp = (
        peak_ue
        * np.minimum(radio, 1.2)
        * np.maximum(1 - rho, 0.015)
        * rng.lognormal(0, 0.08, (c, r))
    )
    dl_thp = dl_thp * np.where(thp_degr > 0, 1 - thp_degr, 1)
    active_ue = users * 0.09 * (0.5 + np.minimum(rho, 1.5))

    ul_load = np.clip(0.45 * rho * rng.lognormal(0, 0.1, (c, r)), 0, 1)
    ul_interf = -112 + 6 * ul_load + rng.normal(0, 1, (c, r)) + interference
    ul_thp = (
        peak_ue_ul
        * np.maximum(1 - ul_load, 0.05)
        * np.clip(radio, 0.2, 1.2)
        * rng.lognormal(0, 0.1, (c, r))
    )
    ul_thp = np.where(interference > 0, ul_thp * 10 ** (-interference / 20), ul_thp)
    ul_volume = dl_volume * 0.12 * rng.lognormal(0, 0.1, (c, r))
    delay = (4 + 30 * np.minimum(rho, 1.2) ** 4) * rng.lognormal(0, 0.1, (c, r))
    delay = np.where(thp_degr > 0, delay * (1 + 3 * thp_degr), delay)

    overload = np.maximum(rho - 0.95, 0)
    rrc_att = rng.poisson(users * 2.0 * scale)
    p_rrc = np.clip(0.997 - 0.4 * overload - ev["accessibility_drop"], 0, 1)
    rrc_succ = rng.binomial(rrc_att, p_rrc)
    drb_att = rng.poisson(rrc_succ * 1.4)
    p_drb = np.clip(0.998 - 0.3 * overload - 0.5 * ev["accessibility_drop"], 0, 1)
    drb_succ = rng.binomial(drb_att, p_drb)
    drb_rel = rng.poisson(drb_succ * 0.97)
    p_drop = np.clip(
        0.004 + 0.1 * overload + ev["retainability_drop"] + np.where(interference > 0, 0.01, 0),
        0,
        1,
    )
    drb_abn = rng.binomial(drb_rel, p_drop)
    ho_rate = np.array([HANDOVERS_PER_USER[AREA_TYPES[a]] for a in topo.area])[:, None]
    ho_att = rng.poisson(users * ho_rate * scale)
    ho_succ = rng.binomial(ho_att, np.where(interference > 0, 0.93, 0.985))

    values: dict[str, np.ndarray] = {
        "prb_util_dl_pct": prb_util,
        "prb_util_ul_pct": 100 * ul_load,
        "prb_avail_dl": np.broadcast_to(prbs, (c, r)),
        "dl_volume_mbit": dl_volume,
        "ul_volume_mbit": ul_volume,
        "dl_ue_thp_mbps": dl_thp,
        "ul_ue_thp_mbps": ul_thp,
        "rrc_conn_mean": users,
        "rrc_conn_max": np.ceil(users * rng.uniform(1.2, 1.6, (c, r))),
        "active_ue_dl_mean": active_ue,
        "rrc_estab_att": rrc_att,
        "rrc_estab_succ": rrc_succ,
        "drb_estab_att": drb_att,
        "drb_estab_succ": drb_succ,
        "drb_rel_abnormal": drb_abn,
        "drb_rel_total": drb_rel,
        "ho_att": ho_att,
        "ho_succ": ho_succ,
        "cqi_mean": cqi,
        "ul_interference_dbm": ul_interf,
        "dl_delay_ms": delay,
        "unavail_s": np.where(outage, rop_s, 0.0),
    }
    cols = {k: np.asarray(v, dtype=np.float64).copy() for k, v in values.items()}
    # An unavailable cell carries nothing: counters are zero, gauges are not reported.
    for name in MEASUREMENT_NAMES:
        if name in ("unavail_s", "prb_avail_dl"):
            continue
        gauge = name in (
            "dl_ue_thp_mbps",
            "ul_ue_thp_mbps",
            "cqi_mean",
            "ul_interference_dbm",
            "dl_delay_ms",
        )
        cols[name][outage] = np.nan if gauge else 0.0
    # A sleeping cell reports normally but has nobody to serve.
    idle = sleeping & (users < 1)
    for name in ("dl_ue_thp_mbps", "ul_ue_thp_mbps", "dl_delay_ms"):
        cols[name][idle] = np.nan

    cell_idx = np.repeat(np.arange(c), r)
    day_start = cfg.start_ts + timedelta(days=day)
    ts = np.tile(
        np.datetime64(day_start.replace(tzinfo=None), "us")
        + np.arange(r) * np.timedelta64(cfg.rop_minutes, "m"),
        c,
    )
    frame = pl.DataFrame(
        {
            "cell_id": topo.cell_id[cell_idx],
            "ts": ts,
            "site_id": topo.site_id[cell_idx],
            "region": topo.region[cell_idx],
            "rat": topo.rat[cell_idx],
            "band": topo.band[cell_idx],
            **{k: v.ravel() for k, v in cols.items()},
        },
        schema_overrides={
            "cell_id": pl.String,
            "site_id": pl.String,
            "region": pl.String,
            "rat": pl.String,
            "band": pl.String,
        },
    )
    frame = frame.with_columns(
        pl.col("ts").dt.replace_time_zone("UTC"),
        pl.col(list(MEASUREMENT_NAMES)).fill_nan(None),
    )
    if cfg.missing_rop_rate > 0:
        keep = rng.random(frame.height) >= cfg.missing_rop_rate
        frame = frame.filter(pl.Series(keep))
    return frame


def iter_days(
    cfg: SimulationConfig, topo: Topology | None = None, events: pl.DataFrame | None = None
) -> Iterator[tuple[date, pl.DataFrame]]:
    """Yield (date, that day's KPIs) for the whole simulation."""
    topo = topo if topo is not None else build_topology(cfg)
    events = events if events is not None else draw_events(topo, cfg)
    for day in range(cfg.days):
        yield cfg.start + timedelta(days=day), simulate_day(topo, events, cfg, day)


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


@dataclass(frozen=True)
class SimulationSummary:
    cells: int
    sites: int
    days: int
    rows: int
    files: int
    events: pl.DataFrame
    congestion_periods: int
    landing_dir: Path
    truth_dir: Path


def write_network(
    cfg: SimulationConfig,
    landing_dir: Path,
    truth_dir: Path,
    rule: CongestionRule,
    events: pl.DataFrame | None = None,
) -> SimulationSummary:
    """Simulate and write landing files, ground-truth events, congestion periods and the
    topology. Congestion periods are computed with the pipeline's own congestion rule.
    `events` replaces the randomly drawn events (to place a known fault)."""
    topo = build_topology(cfg)
    events = events if events is not None else draw_events(topo, cfg)
    rows = files = 0
    narrow = []
    for _, day in progress.track(iter_days(cfg, topo, events), "simulate: days", total=cfg.days):
        for name, part in split_into_files(day, cfg.file_minutes):
            lake.atomic_write_parquet(part, landing_dir / name)
            files += 1
        rows += day.height
        narrow.append(
            day.select("cell_id", "ts", "prb_util_dl_pct", "dl_ue_thp_mbps", "active_ue_dl_mean")
        )
    flags = congestion_flags(pl.concat(narrow), rule, cfg.rop_minutes)
    periods = congestion_periods(flags, cfg.rop_minutes)
    lake.atomic_write_parquet(events, truth_dir / "events.parquet")
    lake.atomic_write_parquet(periods, truth_dir / "congestion.parquet")
    lake.atomic_write_parquet(topo.frame(), truth_dir / "topology.parquet")
    return SimulationSummary(
        cfg.cells,
        len(set(topo.site_id)),
        cfg.days,
        rows,
        files,
        events,
        periods.height,
        landing_dir,
        truth_dir,
    )
