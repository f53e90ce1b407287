"""One day of KPIs for the whole network, from demand to counters, vectorised over
(cells x ROPs)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

import numpy as np
import polars as pl

from cellpulse.contract import MEASUREMENT_NAMES
from cellpulse.simulator.config import SimulationConfig
from cellpulse.simulator.events import event_masks
from cellpulse.simulator.profiles import AREA_TYPES, BANDS, HANDOVERS_PER_USER, profile_at
from cellpulse.simulator.topology import Topology

SLOW_CQI_LOSS = 3.0  # CQI a slow degradation costs per share of traffic it loses
GAUGES_NULL_WHEN_DOWN = (
    "dl_ue_thp_mbps",
    "ul_ue_thp_mbps",
    "cqi_mean",
    "ul_interference_dbm",
    "dl_delay_ms",
)


def load_shape(topo: Topology, cfg: SimulationConfig, day: int) -> np.ndarray:
    """Load shape (cells x ROPs), 0..1, from the area type's weekday or weekend curve; a
    public holiday loads like a Sunday. The network's own shape (`cfg.shape`) moves,
    sharpens and scales it."""
    when = cfg.start + timedelta(days=day)
    weekend_like = when.weekday() >= 5 or when in cfg.holidays
    hours = (np.arange(cfg.rops_per_day) + 0.5) * cfg.rop_minutes / 60
    shape = cfg.shape
    if shape.shift_hours:
        hours = hours - shape.shift_hours
    out = np.empty((topo.size, cfg.rops_per_day))
    for a, name in enumerate(AREA_TYPES):
        out[topo.area == a] = profile_at(name, hours, weekend_like)
    if shape.sharpness != 1.0:
        out = out**shape.sharpness
    level = shape.weekday_levels[6 if when in cfg.holidays else when.weekday()]
    return out * level if level != 1.0 else out


def planned(topo: Topology, cfg: SimulationConfig, day: int) -> Topology:
    """The network as planned changes left it by `day` (the topology itself before any)."""
    done = [c for c in cfg.changes if c.day <= day]
    if not done:
        return topo
    capacity, load = np.ones(topo.size), np.ones(topo.size)
    for change in done:
        capacity[change.cell] *= change.capacity
        load[change.cell] *= change.load
    # More capacity, the same demand: the busy-hour load as a share of capacity falls.
    return replace(
        topo,
        capacity_mbps=topo.capacity_mbps * capacity,
        peak_load=topo.peak_load * load / capacity,
        peak_users=topo.peak_users * load,
    )


def _redistribute(topo: Topology, amount: np.ndarray, lost: np.ndarray) -> np.ndarray:
    """What each cell gains when the `amount` of cells marked `lost` moves to the cells that
    still serve: first to the same sector's other layers (by capacity), and where a sector has
    none left, 30% to the site's other sectors (their coverage overlaps at the edges)."""
    r = amount.shape[1]
    moving = np.where(lost, amount, 0.0)
    alive = ~lost
    cap = topo.capacity_mbps[:, None] * alive
    n_sectors = topo.sector_index.max() + 1
    sector_moving = np.zeros((n_sectors, r))
    sector_cap = np.zeros((n_sectors, r))
    np.add.at(sector_moving, topo.sector_index, moving)
    np.add.at(sector_cap, topo.sector_index, cap)
    has_cap = sector_cap > 0
    gain = np.where(
        has_cap[topo.sector_index],
        sector_moving[topo.sector_index]
        * cap
        / np.where(has_cap, sector_cap, 1)[topo.sector_index],
        0.0,
    )
    orphaned = np.where(has_cap, 0.0, sector_moving) * 0.3
    n_sites = topo.site_index.max() + 1
    site_orphaned = np.zeros((n_sites, r))
    site_cap = np.zeros((n_sites, r))
    sector_site = np.zeros(n_sectors, dtype=int)
    sector_site[topo.sector_index] = topo.site_index
    np.add.at(site_orphaned, sector_site, orphaned)
    np.add.at(site_cap, topo.site_index, cap)
    gain += np.where(
        site_cap[topo.site_index] > 0,
        site_orphaned[topo.site_index] * cap / np.maximum(site_cap[topo.site_index], 1e-9),
        0.0,
    )
    return gain


def simulate_day(
    topo: Topology, events: pl.DataFrame, cfg: SimulationConfig, day: int
) -> pl.DataFrame:
    """All KPIs of one day of the network, contract-shaped, sorted by (cell_id, ts).

    The causal chain in steps: offered load, the radio conditions it meets, what the cell
    carries down- and uplink, the signalling counters, who is connected, then what an
    unavailable, idle or stuck cell reports. Every step draws from one random stream of the
    day, in this order: reordering them changes every simulated network."""
    rng = np.random.default_rng([cfg.seed, 2, day])
    topo = planned(topo, cfg, day)
    ev = event_masks(topo, events, cfg, day)
    users, demand = _offered_load(topo, cfg, day, ev, rng)
    radio = _radio_load(topo, demand, ev, rng)
    down = _downlink(topo, cfg, radio, ev, rng)
    up = _uplink(topo, radio, down["dl_volume_mbit"], ev, rng)
    counts = _signalling(topo, cfg, users, radio.rho, ev, rng)
    connected = _connected(users, radio.rho, rng)
    prbs = np.array([BANDS[b].prbs for b in topo.band], dtype=float)[:, None]
    values = {
        "prb_util_dl_pct": radio.prb_util,
        "prb_avail_dl": np.broadcast_to(prbs, radio.rho.shape),
        "unavail_s": np.where(ev["outage"] > 0, cfg.rop_minutes * 60.0, 0.0),
        "cqi_mean": radio.cqi,
        **down,
        **up,
        **counts,
        **connected,
    }
    # Columns in contract order, as every frame of the simulator has them.
    cols = {k: np.array(values[k], dtype=np.float64) for k in MEASUREMENT_NAMES}
    _blank_unmeasured(cols, ev["outage"] > 0, (ev["sleeping_cell"] > 0) & (users < 1))
    _freeze(cols, ev["stuck_counters"] > 0)
    return _frame(topo, cfg, day, cols, rng)


def _offered_load(
    topo: Topology,
    cfg: SimulationConfig,
    day: int,
    ev: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Connected users and offered Mbit/s (cells x ROPs): the area type's daily shape, a
    day's own level, growth and surges; what dead or sleeping cells lose moves to the cells
    around them."""
    c, r = topo.size, cfg.rops_per_day
    growth = 1 + cfg.growth_per_month * day / 30
    shape = load_shape(topo, cfg, day)
    noise = cfg.noise
    day_level = rng.lognormal(0, 0.05 * noise, (c, 1)) * growth  # some days are simply busier
    users = (
        topo.peak_users[:, None]
        * (0.06 + 0.94 * shape)
        * day_level
        * rng.lognormal(0, 0.1 * noise, (c, r))
    )
    demand = (
        topo.capacity_mbps[:, None]
        * topo.peak_load[:, None]
        * (0.04 + 0.96 * shape)
        * day_level
        * rng.lognormal(0, 0.08 * noise, (c, r))
    )  # offered Mbit/s

    # Surges multiply demand; a level shift keeps a share of it (for days), a slow
    # degradation loses a growing share (the cell's coverage shrinks).
    factor = np.maximum(ev["surge"], 1.0)
    factor = factor * np.where(ev["level_shift"] > 0, ev["level_shift"], 1.0)
    factor = factor * (1 - ev["slow_degradation"])
    users, demand = users * factor, demand * factor
    # A dead cell's users and demand move to the cells around it; a sleeping cell keeps a
    # trickle and loses the rest.
    outage, sleeping = ev["outage"] > 0, ev["sleeping_cell"] > 0
    keep = np.where(outage, 0.0, np.where(sleeping, 1 - ev["sleeping_cell"], 1.0))
    lost = keep < 1
    if lost.any():
        users = users * keep + _redistribute(topo, users * (1 - keep), lost)
        demand = demand * keep + _redistribute(topo, demand * (1 - keep), lost)
    return users, demand


@dataclass(frozen=True)
class _RadioLoad:
    """The radio conditions offered load meets (cells x ROPs)."""

    cqi: np.ndarray
    radio: np.ndarray  # CQI relative to the cell's usual one
    rho: np.ndarray  # offered load relative to what the radio conditions let the cell carry
    prb_util: np.ndarray  # %


def _radio_load(
    topo: Topology, demand: np.ndarray, ev: dict[str, np.ndarray], rng: np.random.Generator
) -> _RadioLoad:
    """CQI (lower under load, interference and degradation) and the load it makes of the
    demand: PRB utilisation follows."""
    c, r = demand.shape
    interference = ev["interference"]
    load = demand / topo.capacity_mbps[:, None]
    cqi = topo.base_cqi[:, None] - 1.2 * np.minimum(load, 1) + rng.normal(0, 0.35, (c, r))
    degraded = ev["gradual_degradation"] + SLOW_CQI_LOSS * ev["slow_degradation"]
    cqi = np.clip(cqi - interference / 5 - degraded, 1, 15)
    radio = cqi / topo.base_cqi[:, None]
    # Offered load relative to what the radio conditions let the cell carry.
    rho = load / np.maximum(radio, 0.2)
    prb_util = np.clip(100 * rho * rng.normal(1, 0.03, (c, r)), 0, 100)
    return _RadioLoad(cqi, radio, rho, prb_util)


def _downlink(
    topo: Topology,
    cfg: SimulationConfig,
    radio: _RadioLoad,
    ev: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Downlink volume and user throughput: what the cell serves, shared by its users."""
    c, r = radio.rho.shape
    rho = radio.rho
    capacity = topo.capacity_mbps[:, None]
    peak_ue = np.array([BANDS[b].peak_ue_dl_mbps for b in topo.band])[:, None]
    served = np.minimum(rho, 1) * capacity * radio.radio
    backhaul = ev["throughput_degradation"]
    served = served * (1 - 0.6 * backhaul)
    rop_s = cfg.rop_minutes * 60.0
    dl_volume = served * rop_s * rng.lognormal(0, 0.05, (c, r))
    # Processor sharing: per-user throughput shrinks with (1 - load), to a trickle in overload.
    dl_thp = (
        peak_ue
        * np.minimum(radio.radio, 1.2)
        * np.maximum(1 - rho, 0.015)
        * rng.lognormal(0, 0.08, (c, r))
        * (1 - backhaul)
    )
    return {"dl_volume_mbit": dl_volume, "dl_ue_thp_mbps": dl_thp}


def _uplink(
    topo: Topology,
    radio: _RadioLoad,
    dl_volume: np.ndarray,
    ev: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Uplink load, interference, throughput and volume, and the delay that load brings."""
    c, r = radio.rho.shape
    rho, interference = radio.rho, ev["interference"]
    peak_ue_ul = np.array([BANDS[b].peak_ue_ul_mbps for b in topo.band])[:, None]
    ul_load = np.clip(0.45 * rho * rng.lognormal(0, 0.1, (c, r)), 0, 1)
    ul_interf = -112 + 6 * ul_load + rng.normal(0, 1, (c, r)) + interference
    ul_thp = (
        peak_ue_ul
        * np.maximum(1 - ul_load, 0.05)
        * np.clip(radio.radio, 0.2, 1.2)
        * rng.lognormal(0, 0.1, (c, r))
        * 10 ** (-interference / 20)
    )
    ul_volume = dl_volume * 0.12 * rng.lognormal(0, 0.1, (c, r))
    backhaul = ev["throughput_degradation"]
    delay = (
        (4 + 30 * np.minimum(rho, 1.2) ** 4) * rng.lognormal(0, 0.1, (c, r)) * (1 + 3 * backhaul)
    )
    return {
        "prb_util_ul_pct": 100 * ul_load,
        "ul_volume_mbit": ul_volume,
        "ul_ue_thp_mbps": ul_thp,
        "ul_interference_dbm": ul_interf,
        "dl_delay_ms": delay,
    }


def _signalling(
    topo: Topology,
    cfg: SimulationConfig,
    users: np.ndarray,
    rho: np.ndarray,
    ev: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Accessibility, retainability and mobility counters, drawn as counts: attempts from
    the users, successes as binomial draws that overload and faults make fail."""
    scale = cfg.rop_minutes / 15.0  # counters per ROP scale with its length
    interference = ev["interference"]
    overload = np.maximum(rho - 0.95, 0)
    rrc_att = rng.poisson(users * 2.0 * scale)
    p_rrc = np.clip(0.997 - 0.4 * overload - ev["accessibility_drop"], 0, 1)
    rrc_succ = rng.binomial(rrc_att, p_rrc)
    drb_att = rng.poisson(rrc_succ * 1.4)
    p_drb = np.clip(0.998 - 0.3 * overload - 0.5 * ev["accessibility_drop"], 0, 1)
    drb_succ = rng.binomial(drb_att, p_drb)
    drb_rel = rng.poisson(drb_succ * 0.97)
    p_drop = np.clip(
        0.004
        + 0.1 * overload
        + ev["retainability_drop"]
        + 0.01 * (interference > 0)
        + 0.003 * ev["gradual_degradation"],
        0,
        1,
    )
    drb_abn = rng.binomial(drb_rel, p_drop)
    ho_rate = np.array([HANDOVERS_PER_USER[AREA_TYPES[a]] for a in topo.area])[:, None]
    ho_att = rng.poisson(users * ho_rate * scale)
    p_ho = np.clip(0.985 - 0.055 * (interference > 0) - ev["handover_failure"], 0, 1)
    ho_succ = rng.binomial(ho_att, p_ho)
    return {
        "rrc_estab_att": rrc_att,
        "rrc_estab_succ": rrc_succ,
        "drb_estab_att": drb_att,
        "drb_estab_succ": drb_succ,
        "drb_rel_abnormal": drb_abn,
        "drb_rel_total": drb_rel,
        "ho_att": ho_att,
        "ho_succ": ho_succ,
    }


def _connected(
    users: np.ndarray, rho: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Connected users (mean and peak of the ROP) and those active in the downlink."""
    return {
        "rrc_conn_mean": users,
        "rrc_conn_max": np.ceil(users * rng.uniform(1.2, 1.6, users.shape)),
        "active_ue_dl_mean": users * 0.09 * (0.5 + np.minimum(rho, 1.5)),
    }


def _blank_unmeasured(cols: dict[str, np.ndarray], outage: np.ndarray, idle: np.ndarray) -> None:
    """An unavailable cell carries nothing and measures nothing; an idle one (sleeping, with
    nobody on it) reports, but has nobody to measure throughput or delay of."""
    for name in MEASUREMENT_NAMES:
        if name not in ("unavail_s", "prb_avail_dl"):
            cols[name][outage] = np.nan if name in GAUGES_NULL_WHEN_DOWN else 0.0
    for name in ("dl_ue_thp_mbps", "ul_ue_thp_mbps", "dl_delay_ms"):
        cols[name][idle] = np.nan


def _freeze(cols: dict[str, np.ndarray], stuck: np.ndarray) -> None:
    """Stuck counters: the node keeps reporting the first value of the episode."""
    if not stuck.any():
        return
    cells, rops = np.nonzero(stuck)
    first = np.empty_like(stuck, dtype=int)
    first[:] = np.arange(stuck.shape[1])
    # Index of the episode's first ROP (within this day) for every stuck position.
    starts = stuck & ~np.concatenate([np.zeros((stuck.shape[0], 1), bool), stuck[:, :-1]], 1)
    anchor = np.where(starts, first, 0)
    anchor = np.maximum.accumulate(anchor, axis=1)
    for name, values in cols.items():
        if name in ("prb_avail_dl", "unavail_s"):
            continue
        values[cells, rops] = values[cells, anchor[cells, rops]]


def _frame(
    topo: Topology,
    cfg: SimulationConfig,
    day: int,
    cols: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> pl.DataFrame:
    c, r = topo.size, cfg.rops_per_day
    cell_idx = pl.Series("i", np.repeat(np.arange(c, dtype=np.uint32), r))
    day_start = (cfg.start_ts + timedelta(days=day)).replace(tzinfo=None)
    ts = np.tile(
        np.datetime64(day_start, "us") + np.arange(r) * np.timedelta64(cfg.rop_minutes, "m"), c
    )
    dims = {
        name: pl.Series(name, getattr(topo, name).tolist(), pl.String).gather(cell_idx)
        for name in ("cell_id", "site_id", "region", "rat", "band")
    }
    frame = pl.DataFrame(
        {
            "cell_id": dims["cell_id"],
            "ts": pl.Series("ts", ts).dt.replace_time_zone("UTC"),
            **{k: dims[k] for k in ("site_id", "region", "rat", "band")},
            **{k: v.ravel() for k, v in cols.items()},
        }
    ).with_columns(pl.col(list(MEASUREMENT_NAMES)).fill_nan(None))
    rate = cfg.delivery.missing_rop_rate
    if rate > 0:
        frame = frame.filter(pl.Series(rng.random(frame.height) >= rate))
    return frame
