"""The contract's row rules as data.

A rule names its column, says in words why a row breaks it, holds the expression that is true
on those rows, and says how validation's first pass finds them (`Screen`). What is checked,
and how it is screened, never depends on how a reason is worded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from functools import lru_cache
from typing import TYPE_CHECKING

import polars as pl

from cellpulse import contract

if TYPE_CHECKING:
    from cellpulse.settings import Settings


@dataclass(frozen=True)
class RuleLimits:
    """The settings the rules read: the ROP length, how far ahead and back a ts may lie, the
    tolerance of successes over attempts and the regions held (none: any).

    Retention is counted back from `retention_anchor` (None: from the run's clock);
    validation sets the anchor per file when `retention_from` is "data" (see
    `ingest.validation.anchored`), from the newest data of the file or the lake
    (`newest_stored`)."""

    rop_minutes: int
    future_tolerance_minutes: int
    retention_days: int
    succ_tolerance: float
    regions: tuple[str, ...] = ()
    retention_from: str = "now"
    newest_stored: datetime | None = None
    retention_anchor: datetime | None = None

    @classmethod
    def of(cls, settings: Settings, newest_stored: datetime | None = None) -> RuleLimits:
        """The limits configured in `settings` (regions sorted, so equal settings give equal
        limits and share their rules); `newest_stored` is the newest ts the lake holds."""
        return cls(
            settings.rop_minutes,
            settings.ingest.future_tolerance_minutes,
            settings.ingest.retention_days,
            settings.ingest.succ_tolerance,
            tuple(sorted(settings.regions or ())),
            settings.ingest.retention_from,
            newest_stored,
        )


class Screen(Enum):
    """How validation's first pass, over every row, finds the rows that may break a rule."""

    OWN = "own"  # the rule's own expression: cheap as it is
    FINITE = "finite"  # shared by all such rules: the sum of their columns is not finite
    LOW = "low"  # shared by the rules of one lower bound: the minimum of their columns is below it


@dataclass(frozen=True, eq=False)
class Rule:
    """One rule of the contract.

    Args:
        column: The column the rule judges, as reports name it.
        reason: Why a row breaks it, in words for the report.
        broken: True on the rows that break the rule (null counts as not broken).
        screen: How the first pass finds those rows.
        low: The lower bound a `Screen.LOW` rule shares with other columns.
    """

    column: str
    reason: str
    broken: pl.Expr
    screen: Screen = Screen.OWN
    low: float | None = None

    def __post_init__(self) -> None:
        if (self.screen is Screen.LOW) != (self.low is not None):
            raise ValueError(f"rule {self.label!r}: a bound is given exactly for a LOW screen")

    @property
    def label(self) -> str:
        """The rule as a quarantined row's reason names it."""
        return f"{self.column}: {self.reason}"


@dataclass(frozen=True, eq=False)
class RuleBook:
    """The rules of one run and their screens: boolean columns true on every row that breaks
    a rule (and possibly a few more)."""

    rules: tuple[Rule, ...]
    screens: tuple[pl.Expr, ...]


@lru_cache(maxsize=8)
def rule_book(limits: RuleLimits, now: datetime) -> RuleBook:
    """The contract's rules under `limits` at `now`, with their screens.

    Built once per run and shared by every file: building ~60 expressions costs more than
    evaluating them on a small file."""
    rules = (*_key_rules(limits, now), *_measurement_rules(limits), *_region_rules(limits))
    return RuleBook(rules, screens_of(rules))


def screens_of(rules: Iterable[Rule], prefix: str = "_s") -> tuple[pl.Expr, ...]:
    """Cheap boolean columns (`<prefix>0`, ...), true on every row that breaks one of `rules`.

    Each rule's `screen` decides how it is screened: on its own, or together with the rules
    sharing its screen. A row is finite everywhere if the sum of its measurements is finite,
    and above every lower bound if the minimum of the columns sharing that bound is.
    """
    screens: list[pl.Expr] = []
    finite: list[str] = []
    lows: dict[float, list[str]] = {}
    for rule in rules:
        if rule.screen is Screen.OWN:
            screens.append(rule.broken)
        elif rule.screen is Screen.FINITE:
            finite.append(rule.column)
        elif rule.low is not None:
            lows.setdefault(rule.low, []).append(rule.column)
    if finite:
        screens.append(~pl.sum_horizontal(finite).is_finite())
    screens += [pl.min_horizontal(names) < low for low, names in lows.items()]
    return tuple(screen.fill_null(False).alias(f"{prefix}{i}") for i, screen in enumerate(screens))


def _key_rules(limits: RuleLimits, now: datetime) -> list[Rule]:
    """Rules of the key columns and the region's form: cell_id, region and ts."""
    rop, ahead = limits.rop_minutes, limits.future_tolerance_minutes
    anchor = limits.retention_anchor
    counted = ""
    if anchor is not None:
        cutoff = anchor - timedelta(days=limits.retention_days)
        counted = f" counted back from the newest data (before {cutoff:%Y-%m-%d %H:%M} UTC)"
    cell_id, region, ts = pl.col("cell_id"), pl.col("region"), pl.col("ts")
    return [
        Rule(
            "cell_id",
            "missing or empty cell_id",
            cell_id.is_null() | (cell_id.str.strip_chars() == ""),
        ),
        Rule(
            "cell_id",
            f"not a valid cell id ({contract.CELL_ID_RULE}); fix the id in the export, or map "
            "it to one",
            _present(cell_id)
            & _breaks(cell_id, contract.CELL_ID_PATTERN, contract.CELL_ID_MAX_CHARS),
        ),
        # A region becomes a folder of the lake: a value that is not a plain folder name
        # would be written outside it, or where no reader looks.
        Rule(
            "region",
            f"not a valid region ({contract.PARTITION_VALUE_RULE}); fix the region in the "
            "export, or map it to one",
            _breaks(region, contract.PARTITION_VALUE_PATTERN, contract.PARTITION_VALUE_MAX_CHARS),
        ),
        Rule("ts", "missing ts", ts.is_null()),
        Rule("ts", f"not aligned to the {rop}-minute ROP", (ts.dt.epoch("s") % (rop * 60)) != 0),
        Rule(
            "ts",
            f"more than {ahead} min in the future",
            ts > now + timedelta(minutes=ahead),
        ),
        Rule(
            "ts",
            f"older than the {limits.retention_days}-day retention{counted}",
            ts < (limits.retention_anchor or now) - timedelta(days=limits.retention_days),
        ),
    ]


def _measurement_rules(limits: RuleLimits) -> list[Rule]:
    """Rules of the measurements: finite, within range, unavailability within one ROP, and
    no more successes than attempts."""
    rules: list[Rule] = []
    for m in contract.MEASUREMENTS:
        c = pl.col(m.name)
        rules.append(Rule(m.name, "NaN or infinite", c.is_nan() | c.is_infinite(), Screen.FINITE))
        if m.low is not None:
            rules.append(Rule(m.name, f"below {m.low:g}", c < m.low, Screen.LOW, m.low))
        if m.high is not None:
            rules.append(Rule(m.name, f"above {m.high:g}", c > m.high))
    rop_s = limits.rop_minutes * 60
    rules.append(
        Rule("unavail_s", f"above the ROP length ({rop_s} s)", pl.col("unavail_s") > rop_s)
    )
    tol = 1 + limits.succ_tolerance
    for succ, att in contract.SUCCESS_PAIRS:
        rules.append(Rule(succ, f"{succ} > {att}", pl.col(succ) > pl.col(att) * tol))
    return rules


def _region_rules(limits: RuleLimits) -> list[Rule]:
    """With regions configured, rows of other regions are refused."""
    if not limits.regions:
        return []
    allowed = list(limits.regions)
    return [
        Rule(
            "region",
            f"region not held by this installation (allowed: {allowed})",
            ~pl.col("region").is_in(allowed),
        )
    ]


def _present(text: pl.Expr) -> pl.Expr:
    return text.is_not_null() & (text.str.strip_chars() != "")


def _breaks(text: pl.Expr, pattern: str, max_chars: int) -> pl.Expr:
    """Whether `text` is longer than `max_chars` or does not match `pattern`; null does not
    break it (other rules judge null). The patterns allow ASCII only, so `max_chars` bounds
    the bytes too."""
    return (text.str.len_chars() > max_chars) | ~text.str.contains(pattern).fill_null(True)
