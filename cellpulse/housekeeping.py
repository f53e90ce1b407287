"""Disk housekeeping of the lake: KPI days that stopped receiving deliveries are compacted
(uncompressed delivery fragments folded into one zstd parquet per region), and days past
each dataset's retention are removed, whole day partitions at a time.

`plan` decides from what the lake holds, the clock and the settings, touching nothing;
`carry_out` does what a plan says and measures the bytes before and after. The landing
folder is never touched: only lake datasets are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from cellpulse.lake import Dataset
from cellpulse.layout import Layout
from cellpulse.settings import HousekeepingSettings

DATASETS = ("kpi", "features", "scores", "expected")


@dataclass(frozen=True)
class DayState:
    """One day of a dataset as housekeeping sees it."""

    day: date
    deliveries: bool = False  # holds delta fragments not yet compacted
    last_delivery: datetime | None = None  # when the newest of them was published


@dataclass(frozen=True)
class Plan:
    """What housekeeping does: days to compact and days to remove, by dataset."""

    newest: date | None  # the day retention counts back from
    compact: dict[str, list[date]] = field(default_factory=dict)
    remove: dict[str, list[date]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not any(self.compact.values()) and not any(self.remove.values())


def plan(
    held: Mapping[str, Sequence[DayState]], now: datetime, settings: HousekeepingSettings
) -> Plan:
    """Which days of each dataset to compact and to remove.

    Retention counts back from the newest KPI day, never later than today, as ingest's
    retention does by default: a lake that stopped receiving data (an outage, a demo loaded
    long ago) keeps its last `retention_days` days rather than being emptied. A dataset
    keeps a day when it is among the `retention_days` calendar days ending there.

    A day holding deliveries is compacted once it is idle: before yesterday (by the clock),
    or without a new delivery for `compact_idle_minutes`. A day about to be removed is not
    compacted first.
    """
    today = now.astimezone(UTC).date()
    kpi_days = [s.day for s in held.get("kpi", ())]
    newest = min(max(kpi_days), today) if kpi_days else None
    idle_since = now - timedelta(minutes=settings.compact_idle_minutes)
    compact: dict[str, list[date]] = {}
    remove: dict[str, list[date]] = {}
    for name, states in held.items():
        keep = getattr(settings.retention_days, name)
        cutoff = newest - timedelta(days=keep) if newest and keep is not None else None
        gone = sorted(s.day for s in states if cutoff is not None and s.day <= cutoff)
        idle = [
            s.day
            for s in states
            if s.deliveries
            and s.day not in gone
            and (
                s.day < today - timedelta(days=1)
                or s.last_delivery is None
                or s.last_delivery <= idle_since
            )
        ]
        remove[name], compact[name] = gone, sorted(idle)
    return Plan(newest, compact, remove)


def survey(layout: Layout) -> dict[str, list[DayState]]:
    """The days each lake dataset holds, with their pending deliveries."""
    held = {}
    for name in DATASETS:
        ds = dataset(layout, name)
        states = []
        for day in ds.dates():
            deltas = ds.deltas(day)
            last = max((f.parent.stat().st_mtime for f in deltas), default=None)
            states.append(
                DayState(
                    day,
                    bool(deltas),
                    datetime.fromtimestamp(last, UTC) if last is not None else None,
                )
            )
        held[name] = states
    return held


def dataset(layout: Layout, name: str) -> Dataset:
    """The lake dataset called `name` (one of DATASETS)."""
    if name not in DATASETS:
        raise ValueError(f"no lake dataset {name!r}; choose from {list(DATASETS)}")
    ds: Dataset = getattr(layout, name)
    return ds


@dataclass
class Outcome:
    """What housekeeping did (or, dry, would do), with bytes per dataset before and after."""

    plan: Plan
    dry_run: bool
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    compacted: dict[str, list[date]] = field(default_factory=dict)
    removed: dict[str, list[date]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """One line per dataset: days compacted and removed, bytes before → after."""
        verb = ("would compact", "would remove") if self.dry_run else ("compacted", "removed")
        out = []
        for name in DATASETS:
            compacted = self.compacted.get(name, [])
            removed = self.removed.get(name, [])
            out.append(
                f"{name}: {verb[0]} {_days(compacted)}, {verb[1]} {_days(removed)}; "
                f"{_mb(self.before.get(name, 0))} → {_mb(self.after.get(name, 0))}"
            )
        return out


def carry_out(layout: Layout, todo: Plan, dry_run: bool = False) -> Outcome:
    """Do what `todo` says (nothing with `dry_run`: bytes after are then bytes now).

    Compaction is `Dataset.compact` (atomic per region, safe against a crash and against a
    delivery published meanwhile); removal is `Dataset.drop_day` (a day renamed out of
    sight, then deleted). Both are idempotent: running a plan twice does what it did once.
    """
    outcome = Outcome(todo, dry_run)
    for name in DATASETS:
        ds = dataset(layout, name)
        outcome.before[name] = ds.size()
        if dry_run:
            outcome.compacted[name] = list(todo.compact.get(name, []))
            outcome.removed[name] = list(todo.remove.get(name, []))
        else:
            ds.clear_dropped()
            outcome.removed[name] = [d for d in todo.remove.get(name, []) if ds.drop_day(d)]
            outcome.compacted[name] = []
            for day in todo.compact.get(name, []):
                ds.compact(day)
                outcome.compacted[name].append(day)
        outcome.after[name] = ds.size()
    return outcome


def housekeep(
    layout: Layout, settings: HousekeepingSettings, now: datetime, dry_run: bool = False
) -> Outcome:
    """Survey the lake, plan, and carry the plan out (or only report it, `dry_run`)."""
    return carry_out(layout, plan(survey(layout), now, settings), dry_run)


def _days(days: list[date]) -> str:
    if not days:
        return "no day"
    if len(days) == 1:
        return f"1 day ({days[0]})"
    return f"{len(days)} days ({days[0]}..{days[-1]})"


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"
