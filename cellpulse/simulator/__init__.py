"""A seeded synthetic RAN: topology, a causal load model, KPI counters, injected events and
OSS-style delivery.

The chain is causal, as in a real network: demand (users and offered load, shaped by the area
type's daily and weekly profile) is split over a sector's band layers and meets cell capacity
(band, CQI); PRB utilisation follows; user throughput falls as load approaches capacity
(processor sharing: thp ~ peak * (1 - load)); accessibility and retainability degrade under
overload. Counters are drawn as counts (Poisson / binomial), so ratios are noisy on quiet cells
exactly as in real networks.

Everything is vectorised over (cells x ROPs of one day) and generated day by day from a
per-day random stream, so any day can be produced alone and a national network fits in memory.
"""

from cellpulse.simulator.config import (
    EVENT_SHAPES,
    EVENT_TYPES,
    FAULT_TYPES,
    KPI_PRESETS,
    DeliveryConfig,
    LoadShape,
    PlannedChange,
    SimulationConfig,
    parse_kpis,
)
from cellpulse.simulator.delivery import (
    SimulationSummary,
    delivered,
    iter_days,
    split_into_files,
    write_network,
)
from cellpulse.simulator.events import EVENT_SCHEMA, draw_events, make_event
from cellpulse.simulator.kpis import simulate_day
from cellpulse.simulator.profiles import AREA_TYPES, BANDS
from cellpulse.simulator.topology import Topology, build_topology
from cellpulse.simulator.worlds import World, draw_world

__all__ = [
    "AREA_TYPES",
    "BANDS",
    "EVENT_SCHEMA",
    "EVENT_SHAPES",
    "EVENT_TYPES",
    "FAULT_TYPES",
    "KPI_PRESETS",
    "DeliveryConfig",
    "LoadShape",
    "PlannedChange",
    "SimulationConfig",
    "SimulationSummary",
    "Topology",
    "World",
    "build_topology",
    "delivered",
    "draw_events",
    "draw_world",
    "iter_days",
    "make_event",
    "parse_kpis",
    "simulate_day",
    "split_into_files",
    "write_network",
]
