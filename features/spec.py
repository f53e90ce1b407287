"""Features declared as data. Each transform names its own output columns; the spec's hash
travels with every feature partition and every model trained on it."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cellpulse.settings import Settings

SPEC_VERSION = 4  # 2: hour_of_week overflow fixed; 3: co-site, stuck runs; 4: level changes
_DURATION = re.compile(r"^(\d+)(m|h|d)$")


def parse_duration(text: str) -> timedelta:
    """'15m', '6h', '7d' -> timedelta."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"duration {text!r} must look like 15m, 6h or 7d")
    n, unit = int(match.group(1)), match.group(2)
    return {"m": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n)}[unit]


@dataclass(frozen=True)
class Rolling:
    """Statistics of a KPI over a trailing time window ending at (and including) ts."""

    kpi: str
    window: str
    stats: tuple[str, ...] = ("mean", "std")

    def columns(self) -> list[str]:
        return [f"{self.kpi}_{stat}_{self.window}" for stat in self.stats]


@dataclass(frozen=True)
class Lag:
    """The KPI's value exactly `lag` earlier (null if that ROP was not reported)."""

    kpi: str
    lag: str

    def column(self) -> str:
        return f"{self.kpi}_lag_{self.lag}"


@dataclass(frozen=True)
class Delta:
    """Current value minus the value `vs` earlier (same time yesterday / last week)."""

    kpi: str
    vs: str

    def column(self) -> str:
        return f"{self.kpi}_delta_{self.vs}"


@dataclass(frozen=True)
class HourOfWeekBaseline:
    """Median of the same ROP in the past `weeks` weeks, and the current value's robust z-score
    against it (spread from the median absolute deviation of those weeks)."""

    kpi: str
    weeks: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.weeks <= 4:
            raise ValueError(f"hour-of-week baseline for {self.kpi}: weeks must be 1 to 4")

    def columns(self) -> list[str]:
        return [f"{self.kpi}_how_median", f"{self.kpi}_how_z"]

    def lags(self) -> list[str]:
        return [f"{7 * w}d" for w in range(1, self.weeks + 1)]


@dataclass(frozen=True)
class StuckRun:
    """How many ROPs in a row, up to `max_window`, the KPI has repeated exactly the same value
    (0 when it changed since the previous ROP): frozen counters are a sleeping cell's mark."""

    kpi: str
    max_window: str = "24h"

    def column(self) -> str:
        return f"{self.kpi}_stuck_rops"


@dataclass(frozen=True)
class LevelChange:
    """The KPI's level over the trailing `window` against the same window `vs` earlier, as
    a relative change (sum now / sum then - 1, over the ROPs reported both times). One
    ROP's noise averages out in it; a level that moved and stayed (a level shift, a
    degradation that deepens over days) adds up."""

    kpi: str
    window: str = "24h"
    vs: str = "7d"

    def column(self) -> str:
        return f"{self.kpi}_change_{self.window}_vs_{self.vs}"


# Co-site statistics, in the order the kernel (`kernels.cosite`) lays out its planes.
COSITE_STATS = ("share", "site_mean", "siblings_mean", "sibling_dev")


@dataclass(frozen=True)
class CoSite:
    """The cell against the other cells of its site at the same ROP (the contract has no
    sector, so a cell's siblings are the site's other cells).

    share: the cell's part of the site's total; site_mean: mean over the site's cells;
    siblings_mean: mean over the *other* cells (context a fault on this cell does not touch);
    sibling_dev: the cell's value minus siblings_mean."""

    kpi: str
    stats: tuple[str, ...] = ("share", "sibling_dev")

    def __post_init__(self) -> None:
        unknown = [s for s in self.stats if s not in COSITE_STATS]
        if unknown:
            raise ValueError(f"co-site {self.kpi}: unknown stats {unknown}; use {COSITE_STATS}")

    def columns(self) -> list[str]:
        return [f"{self.kpi}_{stat}" for stat in self.stats]


CALENDAR_COLUMNS = ("hour", "day_of_week", "hour_of_week", "is_weekend", "is_holiday")


@dataclass(frozen=True)
class FeatureSpec:
    """Every feature the builder makes, as data: which KPIs pass through and which
    transforms apply to which KPI. Its hash names what a feature table and a model hold."""

    kpis: tuple[str, ...]
    rolling: tuple[Rolling, ...] = ()
    lags: tuple[Lag, ...] = ()
    deltas: tuple[Delta, ...] = ()
    baselines: tuple[HourOfWeekBaseline, ...] = ()
    stuck: tuple[StuckRun, ...] = ()
    cosite: tuple[CoSite, ...] = ()
    changes: tuple[LevelChange, ...] = ()
    missing_windows: tuple[str, ...] = ("24h",)
    calendar: bool = True
    holidays: tuple[str, ...] = ()  # ISO dates, in the network's local time zone
    version: int = field(default=SPEC_VERSION)

    def columns(self) -> list[str]:
        """Every feature column, in table order (keys and dimensions excluded)."""
        cols = list(self.kpis)
        if self.calendar:
            cols += list(CALENDAR_COLUMNS)
        cols += [f"rops_missing_{w}" for w in self.missing_windows]
        for r in self.rolling:
            cols += r.columns()
        cols += [lag.column() for lag in self.lags]
        cols += [d.column() for d in self.deltas]
        for b in self.baselines:
            cols += b.columns()
        cols += [s.column() for s in self.stuck]
        for c in self.cosite:
            cols += c.columns()
        cols += [c.column() for c in self.changes]
        return cols

    def network_columns(self) -> list[str]:
        """The columns that describe the network (not the calendar): what drift is about."""
        return [c for c in self.columns() if c not in CALENDAR_COLUMNS]

    def kpis_used(self) -> list[str]:
        """Every KPI the spec reads, in first-use order."""
        used = [*self.kpis, *(r.kpi for r in self.rolling), *(k for k, _ in self.all_lags())]
        used += [*(s.kpi for s in self.stuck), *(c.kpi for c in self.cosite)]
        used += [c.kpi for c in self.changes]
        return list(dict.fromkeys(used))

    def columns_by_kpi(self) -> dict[str, list[str]]:
        """The feature columns made from each KPI the spec reads."""
        out: dict[str, list[str]] = {k: [] for k in self.kpis_used()}
        for k in self.kpis:
            out[k].append(k)
        for r in self.rolling:
            out[r.kpi] += r.columns()
        for lag in self.lags:
            out[lag.kpi].append(lag.column())
        for d in self.deltas:
            out[d.kpi].append(d.column())
        for b in self.baselines:
            out[b.kpi] += b.columns()
        for s in self.stuck:
            out[s.kpi].append(s.column())
        for c in self.cosite:
            out[c.kpi] += c.columns()
        for change in self.changes:
            out[change.kpi].append(change.column())
        return out

    def restricted_to(self, kpis: Collection[str]) -> FeatureSpec:
        """This spec without the transforms of KPIs not in `kpis` (the data does not hold
        them): no feature is made from a KPI that does not exist. The same spec (and hash)
        when every KPI it reads is there."""
        have = set(kpis)
        if have >= set(self.kpis_used()):
            return self
        return replace(
            self,
            kpis=tuple(k for k in self.kpis if k in have),
            rolling=tuple(r for r in self.rolling if r.kpi in have),
            lags=tuple(lag for lag in self.lags if lag.kpi in have),
            deltas=tuple(d for d in self.deltas if d.kpi in have),
            baselines=tuple(b for b in self.baselines if b.kpi in have),
            stuck=tuple(s for s in self.stuck if s.kpi in have),
            cosite=tuple(c for c in self.cosite if c.kpi in have),
            changes=tuple(c for c in self.changes if c.kpi in have),
        )

    def all_lags(self) -> list[tuple[str, str]]:
        """(kpi, lag) pairs the builder must join, from lags, deltas and baselines."""
        pairs = {(lag.kpi, lag.lag) for lag in self.lags}
        pairs |= {(d.kpi, d.vs) for d in self.deltas}
        pairs |= {(b.kpi, lag) for b in self.baselines for lag in b.lags()}
        return sorted(pairs)

    def window_lookback(self) -> timedelta:
        """How far back the trailing windows (rolling, missing-data, stuck-run) reach."""
        spans = [parse_duration(r.window) for r in self.rolling]
        spans += [parse_duration(w) for w in self.missing_windows]
        spans += [parse_duration(s.max_window) for s in self.stuck]
        spans += [parse_duration(c.window) for c in self.changes]
        return max(spans, default=timedelta(0))

    def lookback(self) -> timedelta:
        """How much history before a day the builder needs to compute that day exactly: the
        windows' reach or the longest lag, whichever is longer."""
        lags = [parse_duration(lag) for _, lag in self.all_lags()]
        lags += [parse_duration(c.vs) + parse_duration(c.window) for c in self.changes]
        return max([self.window_lookback(), *lags])

    def hash(self) -> str:
        payload = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


CORE_KPIS = (
    "prb_util_dl_pct",
    "prb_util_ul_pct",
    "dl_ue_thp_mbps",
    "ul_ue_thp_mbps",
    "dl_volume_mbit",
    "rrc_conn_mean",
    "active_ue_dl_mean",
    "cqi_mean",
    "ul_interference_dbm",
    "dl_delay_ms",
    "availability_pct",
    "rrc_sr_pct",
    "drb_sr_pct",
    "drop_rate_pct",
    "ho_sr_pct",
)
_ROLLED = (
    "prb_util_dl_pct",
    "dl_ue_thp_mbps",
    "dl_volume_mbit",
    "active_ue_dl_mean",
    "availability_pct",
    "rrc_sr_pct",
    "drop_rate_pct",
    "cqi_mean",
)
_SEASONAL = (
    "prb_util_dl_pct",
    "dl_ue_thp_mbps",
    "dl_volume_mbit",
    "rrc_conn_mean",
    "active_ue_dl_mean",
    "cqi_mean",
    "ul_interference_dbm",
    "availability_pct",
    "rrc_sr_pct",
    "drop_rate_pct",
    "ho_sr_pct",
    "ul_ue_thp_mbps",
    "dl_delay_ms",
)

# KPIs whose level is tracked over a day against last week (`LevelChange`): traffic and
# users (a cell that lost part of its coverage) and radio quality (a slow degradation).
_LEVELS = ("dl_volume_mbit", "rrc_conn_mean", "prb_util_dl_pct", "dl_ue_thp_mbps", "cqi_mean")


def default_spec(rop_minutes: int = 15, holidays: tuple[str, ...] = ()) -> FeatureSpec:
    """The spec cellpulse ships with: about 120 features per cell and ROP."""
    one_rop = f"{rop_minutes}m"
    short = [one_rop] if rop_minutes < 60 else []
    return FeatureSpec(
        kpis=CORE_KPIS,
        rolling=tuple(
            [
                Rolling(k, w)
                for k in _ROLLED
                for w in ("1h", "24h")
                if not (w == "1h" and rop_minutes >= 60)
            ]
            + [
                Rolling("prb_util_dl_pct", "6h", ("mean", "max")),
                Rolling("dl_ue_thp_mbps", "6h", ("mean", "min")),
            ]
        ),
        lags=tuple(
            Lag(k, lag)
            for k in ("prb_util_dl_pct", "dl_ue_thp_mbps", "active_ue_dl_mean")
            for lag in (*short, "1h", "1d", "7d")
        )
        + tuple(
            Lag(k, lag)
            for k in _SEASONAL
            for lag in ("1d",)
            if k not in ("prb_util_dl_pct", "dl_ue_thp_mbps", "active_ue_dl_mean")
        ),
        deltas=tuple(
            Delta(k, vs)
            for k in ("prb_util_dl_pct", "dl_volume_mbit", "dl_ue_thp_mbps")
            for vs in ("1d", "7d")
        ),
        baselines=tuple(HourOfWeekBaseline(k) for k in _SEASONAL),
        stuck=tuple(StuckRun(k) for k in ("dl_volume_mbit", "rrc_conn_mean", "prb_util_dl_pct")),
        cosite=(
            CoSite("dl_volume_mbit", ("share", "siblings_mean", "sibling_dev")),
            CoSite("prb_util_dl_pct", ("site_mean", "siblings_mean", "sibling_dev")),
            CoSite("rrc_conn_mean", ("share", "siblings_mean")),
            CoSite("availability_pct", ("siblings_mean", "sibling_dev")),
        ),
        changes=tuple(LevelChange(k) for k in _LEVELS),
        holidays=tuple(sorted(holidays)),
    )


@dataclass(frozen=True)
class FeatureParams:
    """The settings that shape an installation's features: the ROP length, the network's
    time zone and public holidays (calendar features), the fewest attempts that make a
    success ratio, and how many cells are built at once (bounds memory)."""

    rop_minutes: int
    timezone: str
    holidays: tuple[date, ...]
    min_denominator: int
    chunk_cells: int

    @classmethod
    def of(cls, settings: Settings) -> FeatureParams:
        """The feature parameters configured in `settings`."""
        return cls(
            settings.rop_minutes,
            settings.timezone,
            tuple(settings.holidays),
            settings.min_denominator,
            settings.feature_chunk_cells,
        )


def spec_for(params: FeatureParams, kpis: Collection[str] | None = None) -> FeatureSpec:
    """The spec an installation builds with: the default for its ROP length and holidays.

    Args:
        params: the installation's feature parameters (`FeatureParams.of(settings)`).
        kpis: the KPIs its sources deliver, derived ones included
            (`contract.available_kpis(contract.delivered(...))`); the spec is restricted
            to them when given.
    """
    spec = default_spec(params.rop_minutes, tuple(d.isoformat() for d in params.holidays))
    return spec if kpis is None else spec.restricted_to(kpis)
