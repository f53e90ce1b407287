"""The network's static shape: regions -> sites -> sectors -> cells on one to three bands."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from cellpulse.simulator.config import SimulationConfig
from cellpulse.simulator.profiles import (
    AREA_TYPES,
    AREA_WEIGHTS,
    BANDS,
    PEAK_USERS,
    RURAL_LAYERS,
    URBAN_LAYERS,
)


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
    sector_index: np.ndarray  # unique over the network
    x_km: np.ndarray
    y_km: np.ndarray
    peak_load: np.ndarray  # offered load at the busiest hour, as a fraction of capacity
    peak_users: np.ndarray
    base_cqi: np.ndarray
    capacity_mbps: np.ndarray

    @property
    def size(self) -> int:
        return len(self.cell_id)

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "cell_id": self.cell_id.tolist(),
                "site_id": self.site_id.tolist(),
                "region": self.region.tolist(),
                "rat": self.rat.tolist(),
                "band": self.band.tolist(),
                "area_type": [AREA_TYPES[a] for a in self.area],
                "x_km": self.x_km,
                "y_km": self.y_km,
            }
        )


def build_topology(cfg: SimulationConfig) -> Topology:
    """Sites with three sectors and one to three band layers, until there are `cfg.cells`
    cells (the last site may be partial). Sites cluster around a few towns per region, so
    every site has neighbours; area type follows the distance to the town centre.

    The steps draw from one random stream of the seed, in this order: reordering them
    changes every simulated network."""
    rng = np.random.default_rng([cfg.seed, 0])
    rows, site_area = _sites_and_layers(cfg.cells, rng)
    xy, site_region = _place_sites(site_area, len(cfg.regions), rng)
    n_sites = len(site_area)
    site_idx = np.array([r[0] for r in rows])
    sector = np.array([r[1] for r in rows])
    band = np.array([r[2] for r in rows], dtype=object)
    site_names = np.array([f"S{i:05d}" for i in range(n_sites)], dtype=object)
    capacity = np.array([BANDS[b].cell_capacity_mbps for b in band])
    sector_key = site_idx * 3 + (sector - 1)
    peak_load = _peak_load(site_idx, sector, n_sites, rng)
    users = _peak_users(site_area, site_idx, sector_key, capacity, rng)
    return Topology(
        cell_id=np.array([f"{site_names[s]}-{k}-{b}" for s, k, b in rows], dtype=object),
        site_id=site_names[site_idx],
        region=np.array(cfg.regions, dtype=object)[site_region[site_idx]],
        band=band,
        rat=np.array([BANDS[b].rat for b in band], dtype=object),
        area=np.array(site_area)[site_idx],
        site_index=site_idx,
        sector_index=sector_key,
        x_km=xy[site_idx, 0],
        y_km=xy[site_idx, 1],
        peak_load=peak_load,
        peak_users=users,
        base_cqi=np.clip(rng.normal(10.5, 1.0, len(rows)), 6, 14),
        capacity_mbps=capacity,
    )


def _sites_and_layers(
    cells: int, rng: np.random.Generator
) -> tuple[list[tuple[int, int, str]], list[int]]:
    """Cells as (site, sector, band), site after site until there are `cells`, and each
    site's area type (an index into AREA_TYPES), which decides its band layers."""
    rows: list[tuple[int, int, str]] = []
    site_area: list[int] = []
    while len(rows) < cells:
        site = len(site_area)
        area = int(rng.choice(len(AREA_TYPES), p=AREA_WEIGHTS))
        site_area.append(area)
        options = RURAL_LAYERS if AREA_TYPES[area] == "rural" else URBAN_LAYERS
        layers = options[rng.choice(len(options), p=[p for _, p in options])][0]
        rows += [(site, sector, band) for sector in (1, 2, 3) for band in layers]
    return rows[:cells], site_area


def _place_sites(
    site_area: list[int], n_regions: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Each site's (x, y) in km and its region (by x): towns, one per region and a few more;
    urban sites near a centre, rural ones spread out."""
    n_sites = len(site_area)
    centres = rng.uniform(0, 100, (max(2 * n_regions, 2), 2))
    town = rng.integers(len(centres), size=n_sites)
    rural = np.array([AREA_TYPES[a] == "rural" for a in site_area])
    spread = np.where(rural, 15.0, 3.0)
    xy = centres[town] + rng.normal(0, 1, (n_sites, 2)) * spread[:, None]
    site_region = np.minimum(
        (np.clip(xy[:, 0], 0, 99.999) / 100 * n_regions).astype(int), n_regions - 1
    )
    return xy, site_region


def _peak_load(
    site_idx: np.ndarray, sector: np.ndarray, n_sites: int, rng: np.random.Generator
) -> np.ndarray:
    """Each cell's offered load at the busiest hour, as a fraction of its capacity."""
    # A sector's busyness is shared by its cells: they serve the same people.
    sector_busy = np.clip(rng.beta(5, 3.2, (n_sites, 3)) * 1.05, 0.1, 0.98)
    return np.clip(
        sector_busy[site_idx, sector - 1] * rng.lognormal(0, 0.08, site_idx.size), 0.05, 0.99
    )


def _peak_users(
    site_area: list[int],
    site_idx: np.ndarray,
    sector_key: np.ndarray,
    capacity: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Each cell's users at the busiest hour: the area type's sector users, split over the
    sector's layers by capacity share."""
    sector_capacity = np.bincount(sector_key, weights=capacity)
    share = capacity / sector_capacity[sector_key]
    sector_users = np.array([PEAK_USERS[AREA_TYPES[a]] for a in site_area]) * 1.5
    return sector_users[site_idx] * rng.lognormal(0, 0.3, site_idx.size) * np.sqrt(share)
