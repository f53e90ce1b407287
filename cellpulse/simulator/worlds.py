"""Whole simulated worlds drawn at random (domain randomisation), so quality is claimed on
many networks, not on the one the models were developed against: load shapes, growth,
noise, planned changes, holidays, the KPIs delivered, the ROP, and which faults happen, how
bad and for how long. Same seed, same world."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from cellpulse.simulator.config import (
    EVENT_SHAPES,
    FAULT_TYPES,
    KPI_PRESETS,
    LoadShape,
    PlannedChange,
    SimulationConfig,
)

# The ranges a world is drawn from.
CELLS = (60, 120)
TRAIN_DAYS = (8, 10)  # a week of lags plus some days to learn from
SCORED_DAYS = (3, 4)  # the newest days, held out and scored
ROP_MINUTES = (15, 60)
KPI_SUBSETS = ("all", "prb_volume", "volume_users")
GROWTH_PER_MONTH = (0.0, 0.15)
NOISE = (0.6, 1.8)
SHIFT_HOURS = (-2.0, 2.0)
SHARPNESS = (0.6, 1.6)
WEEKDAY_LEVEL = (0.9, 1.1)
WEEKEND_LEVEL = (0.7, 1.2)
EVENTS_PER_CELL_DAY = (0.02, 0.04)
MAX_CHANGES = 3
UPGRADE = (1.3, 2.0)  # capacity factor of an upgrade
LOAD_STEP = (0.6, 1.5)  # traffic factor of a load step
# The fault types that leave a mark on each KPI subset: a world only has faults its KPIs
# can show (an accessibility drop is invisible in a traffic report, for anyone).
_TRAFFIC: tuple[str, ...] = (
    "outage",
    "sleeping_cell",
    "throughput_degradation",
    "stuck_counters",
    "level_shift",
    "slow_degradation",
)
VISIBLE_FAULTS: dict[str, tuple[str, ...]] = {
    "all": FAULT_TYPES,
    "prb_volume": (*_TRAFFIC, "interference", "gradual_degradation"),  # both load the PRBs
    "volume_users": _TRAFFIC,
}
FAULT_SHARE = 0.7  # chance that a fault type happens in a world at all
MIN_FAULT_TYPES = 3
DURATION_SCALE = (0.5, 2.0)  # how much longer or shorter than usual faults last
SLOW_SCALE = (1.0, 2.5)  # degradations that creep: up to 2.5x their usual length


@dataclass(frozen=True)
class World:
    """A drawn world: the network to simulate (`config`, the whole of it), the name of the
    KPI subset it delivers, and how many of its newest days are held out and scored."""

    seed: int
    config: SimulationConfig
    kpi_subset: str
    scored_days: int

    @property
    def train_days(self) -> int:
        return self.config.days - self.scored_days

    @property
    def fault_types(self) -> tuple[str, ...]:
        """The fault types that happen in this world."""
        return tuple(t for t in FAULT_TYPES if self.config.event_weights.get(t, 0) > 0)

    def describe(self) -> str:
        """One line: what kind of world this is."""
        c = self.config
        return (
            f"world {self.seed}: {c.cells} cells, {self.train_days}+{self.scored_days} days, "
            f"{c.rop_minutes}-min ROPs, KPIs {self.kpi_subset}, growth "
            f"{c.growth_per_month:.0%}/month, noise x{c.noise:.2f}, {len(c.changes)} planned "
            f"changes, {len(c.holidays)} holidays, faults: {', '.join(self.fault_types)}"
        )


def draw_world(seed: int) -> World:
    """A random world from `seed` (same seed, same world). Every knob is drawn from its
    range above from one random stream, in a fixed order: reordering the draws changes
    every world."""
    rng = np.random.default_rng([seed, 20])
    cells = int(rng.integers(CELLS[0], CELLS[1] + 1))
    scored = int(rng.integers(SCORED_DAYS[0], SCORED_DAYS[1] + 1))
    days = int(rng.integers(TRAIN_DAYS[0], TRAIN_DAYS[1] + 1)) + scored
    rop = int(rng.choice(ROP_MINUTES))
    subset = str(rng.choice(KPI_SUBSETS))
    weekend = float(rng.uniform(*WEEKEND_LEVEL))
    shift, sharpness = float(rng.uniform(*SHIFT_HOURS)), float(rng.uniform(*SHARPNESS))
    workdays = [float(rng.uniform(*WEEKDAY_LEVEL)) for _ in range(5)]
    sunday = weekend * float(rng.uniform(0.9, 1.1))
    shape = LoadShape(shift, sharpness, (*workdays, weekend, sunday))
    base = SimulationConfig()
    # A holiday anywhere but the first day (so it may fall on a scored day).
    holidays = (
        (base.start + timedelta(days=int(rng.integers(1, days))),) if rng.random() < 0.5 else ()
    )
    weights, shapes = _faults(rng, VISIBLE_FAULTS[subset])
    return World(
        seed,
        SimulationConfig(
            cells=cells,
            days=days,
            seed=seed,
            rop_minutes=rop,
            events_per_cell_day=float(rng.uniform(*EVENTS_PER_CELL_DAY)),
            event_weights=weights,
            event_shapes=shapes,
            holidays=holidays,
            growth_per_month=float(rng.uniform(*GROWTH_PER_MONTH)),
            kpis=KPI_PRESETS[subset] if subset != "all" else None,
            shape=shape,
            noise=float(rng.uniform(*NOISE)),
            changes=_changes(rng, cells, days),
        ),
        subset,
        scored,
    )


def _faults(
    rng: np.random.Generator, visible: tuple[str, ...]
) -> tuple[dict[str, float], dict[str, tuple[float, tuple[float, float], tuple[float, float]]]]:
    """Which of the `visible` fault types happen (at least MIN_FAULT_TYPES), how often
    relative to each other, how long and how bad; surges (load, not faults) always happen."""
    happens = rng.random(len(visible)) < FAULT_SHARE
    if happens.sum() < MIN_FAULT_TYPES:
        happens[rng.choice(len(visible), MIN_FAULT_TYPES, replace=False)] = True
    on = {t for t, yes in zip(visible, happens, strict=True) if yes}
    weights = {t: float(rng.uniform(0.3, 1.5)) if t in on else 0.0 for t in FAULT_TYPES}
    weights["surge"] = float(rng.uniform(0.5, 2.0))
    shapes = dict(EVENT_SHAPES)
    for kind in FAULT_TYPES:
        weight, (dmin, dmax), (smin, smax) = EVENT_SHAPES[kind]
        slow = kind in ("gradual_degradation", "slow_degradation")
        scale = rng.uniform(*(SLOW_SCALE if slow else DURATION_SCALE))
        # Magnitude: the severity range narrowed to its subtle or its severe half, or between.
        m = rng.uniform(0, 1)
        lo, hi = smin + (smax - smin) * m / 2, smin + (smax - smin) * (1 + m) / 2
        shapes[kind] = (weight, (dmin * scale, dmax * scale), (lo, hi))
    return weights, shapes


def _changes(rng: np.random.Generator, cells: int, days: int) -> tuple[PlannedChange, ...]:
    """Up to MAX_CHANGES planned changes, each an upgrade or a step in traffic, on a day
    after the first."""
    out = []
    for _ in range(int(rng.integers(0, MAX_CHANGES + 1))):
        cell, day = int(rng.integers(cells)), int(rng.integers(1, days))
        if rng.random() < 0.5:
            out.append(PlannedChange(cell, day, capacity=float(rng.uniform(*UPGRADE))))
        else:
            out.append(PlannedChange(cell, day, load=float(rng.uniform(*LOAD_STEP))))
    return tuple(out)
