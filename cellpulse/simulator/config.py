"""What network to simulate and how its files are delivered. Same config, same bytes out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from cellpulse.contract import MEASUREMENT_NAMES

# Relative frequency, duration range in hours, severity range, per event type.
EVENT_SHAPES: dict[str, tuple[float, tuple[float, float], tuple[float, float]]] = {
    "outage": (1.0, (1, 8), (1.0, 1.0)),
    "sleeping_cell": (0.6, (6, 36), (0.9, 0.99)),
    "throughput_degradation": (1.0, (2, 24), (0.5, 0.85)),  # transport/backhaul bottleneck
    "accessibility_drop": (1.0, (2, 12), (0.15, 0.5)),
    "retainability_drop": (0.8, (2, 12), (0.04, 0.15)),
    "interference": (0.8, (3, 24), (10.0, 20.0)),  # dB of extra UL noise
    "handover_failure": (0.7, (1, 8), (0.15, 0.5)),
    "stuck_counters": (0.5, (3, 24), (1.0, 1.0)),
    "gradual_degradation": (0.4, (48, 120), (2.0, 4.0)),  # CQI lost by the end
    "surge": (1.5, (2, 5), (1.6, 2.6)),  # demand multiplier
    # Off unless weighted (drawn worlds, `--event-weight`): the networks simulated so far
    # stay the same bytes.
    "level_shift": (0.0, (24, 120), (0.3, 0.8)),  # traffic multiplier, for days
    "slow_degradation": (0.0, (96, 240), (0.3, 0.6)),  # share of traffic lost by the end
}
# Measurement subsets real exports deliver: the full contract, utilisation and volume only (a
# typical hourly capacity report), volume and connected users only (a traffic report).
KPI_PRESETS: dict[str, tuple[str, ...]] = {
    "all": MEASUREMENT_NAMES,
    "prb_volume": ("prb_util_dl_pct", "dl_volume_mbit"),
    "volume_users": ("dl_volume_mbit", "rrc_conn_mean"),
}
FAULT_TYPES = tuple(t for t in EVENT_SHAPES if t != "surge")
EVENT_TYPES = tuple(EVENT_SHAPES)


@dataclass(frozen=True)
class DeliveryConfig:
    """How the OSS delivers files: on time and once, or as real feeds do."""

    file_minutes: int = 60
    missing_rop_rate: float = 0.0  # ROPs never reported
    late_file_rate: float = 0.0  # files delivered after all the on-time ones
    redelivery_rate: float = 0.0  # files first delivered with errors, then corrected
    duplicate_file_rate: float = 0.0  # files delivered twice under another name

    @classmethod
    def realistic(cls) -> DeliveryConfig:
        return cls(
            missing_rop_rate=0.002,
            late_file_rate=0.02,
            redelivery_rate=0.01,
            duplicate_file_rate=0.01,
        )


@dataclass(frozen=True)
class LoadShape:
    """How a network's daily and weekly load differs from the area types' curves: the
    curves moved by `shift_hours`, sharpened (`sharpness` > 1: a narrower busy hour) and
    scaled per weekday (`weekday_levels`, Monday first). The defaults change nothing."""

    shift_hours: float = 0.0
    sharpness: float = 1.0
    weekday_levels: tuple[float, ...] = (1.0,) * 7


@dataclass(frozen=True)
class PlannedChange:
    """A change people made on purpose, not a fault: from day `day` (0 = the first
    simulated day) on, cell number `cell` has `capacity` times its capacity (an upgrade:
    the same demand loads it less) and carries `load` times its traffic (a neighbour site
    switched on takes some; a new building brings more)."""

    cell: int
    day: int
    capacity: float = 1.0
    load: float = 1.0


@dataclass(frozen=True)
class SimulationConfig:
    cells: int = 200
    days: int = 14
    start: date = date(2026, 1, 5)
    seed: int = 7
    rop_minutes: int = 15
    regions: tuple[str, ...] = ("north", "south")
    events_per_cell_day: float = 0.012
    event_weights: dict[str, float] = field(
        default_factory=lambda: {t: s[0] for t, s in EVENT_SHAPES.items()}
    )
    holidays: tuple[date, ...] = ()  # days that load like a Sunday
    growth_per_month: float = 0.01  # slow traffic growth
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    # Contract measurements the export delivers (the others are simulated, so ground truth
    # is the same whatever the subset, but never written); None: every one.
    kpis: tuple[str, ...] | None = None
    # Domain randomisation (cellpulse.simulator.worlds); the defaults change nothing.
    shape: LoadShape = field(default_factory=LoadShape)
    noise: float = 1.0  # scales the random variation of offered load
    changes: tuple[PlannedChange, ...] = ()
    # Duration (hours) and severity ranges per event type, instead of EVENT_SHAPES'.
    event_shapes: dict[str, tuple[float, tuple[float, float], tuple[float, float]]] = field(
        default_factory=lambda: dict(EVENT_SHAPES)
    )

    def __post_init__(self) -> None:
        if self.kpis is not None:
            strange = [k for k in self.kpis if k not in MEASUREMENT_NAMES]
            if strange or not self.kpis:
                raise ValueError(
                    f"kpis {list(strange or self.kpis)}: name one or more contract "
                    f"measurements ({', '.join(MEASUREMENT_NAMES)})"
                )
        if self.rop_minutes not in (5, 15, 60):
            raise ValueError("rop_minutes must be 5, 15 or 60")
        if self.cells < 1 or self.days < 1:
            raise ValueError("cells and days must be at least 1")
        unknown = (set(self.event_weights) | set(self.event_shapes)) - set(EVENT_SHAPES)
        if unknown:
            raise ValueError(f"unknown event types {sorted(unknown)}; known: {EVENT_TYPES}")
        if len(self.shape.weekday_levels) != 7 or self.noise < 0:
            raise ValueError("shape.weekday_levels needs 7 values and noise cannot be negative")
        if any(not 0 <= c.cell < self.cells for c in self.changes):
            raise ValueError(f"planned changes must name cells 0 to {self.cells - 1}")

    @property
    def delivered(self) -> tuple[str, ...]:
        """The measurements written, in contract order."""
        wanted = set(self.kpis or MEASUREMENT_NAMES)
        return tuple(m for m in MEASUREMENT_NAMES if m in wanted)

    @property
    def rops_per_day(self) -> int:
        return 1440 // self.rop_minutes

    @property
    def start_ts(self) -> datetime:
        return datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)


def parse_event_weights(items: list[str]) -> dict[str, float]:
    """`["outage=2", "surge=0"]` -> the default weights with those changed. Raises ValueError
    naming the bad item."""
    weights = {t: s[0] for t, s in EVENT_SHAPES.items()}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in EVENT_SHAPES:
            raise ValueError(
                f"--event-weight {item!r}: use TYPE=WEIGHT with TYPE one of "
                f"{', '.join(EVENT_TYPES)}"
            )
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"--event-weight {item!r}: {value!r} is not a number") from None
        if weights[name] < 0:
            raise ValueError(f"--event-weight {item!r}: weights cannot be negative")
    return weights


def parse_kpis(text: str) -> tuple[str, ...] | None:
    """`--kpis` text -> the measurements to deliver: a preset name (KPI_PRESETS; "all" is
    None) or comma-separated contract measurements. Raises ValueError naming the bad part."""
    name = text.strip()
    if name == "all":
        return None
    if name in KPI_PRESETS:
        return KPI_PRESETS[name]
    kpis = tuple(k.strip() for k in name.split(",") if k.strip())
    unknown = [k for k in kpis if k not in MEASUREMENT_NAMES]
    if unknown or not kpis:
        raise ValueError(
            f"--kpis {text!r}: use a preset ({', '.join(KPI_PRESETS)}) or comma-separated "
            f"contract measurements; unknown: {', '.join(unknown) or 'none given'}"
        )
    return kpis
