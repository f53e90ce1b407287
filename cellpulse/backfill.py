"""Backfill planning: which stages each day of a range needs, so a backfill is idempotent
and resumable (a day whose output exists and is not stale is skipped; one interrupted at
day 40 of 90 picks up at day 40 when run again)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from cellpulse.errors import NoDataError
from cellpulse.layout import Layout
from cellpulse.ledger import Ledger

STAGES = ("features", "score")
# The ledger's name for each stage's output.
_OUTPUT = {"features": "features", "score": "scores"}


@dataclass
class BackfillSummary:
    """What a backfill did: every day it covered, the stages it ran on each, how long."""

    days: list[date]
    stages: tuple[str, ...]
    ran: dict[date, list[str]] = field(default_factory=dict)  # day -> stages run
    seconds: dict[date, float] = field(default_factory=dict)

    @property
    def skipped(self) -> list[date]:
        return [d for d in self.days if not self.ran.get(d)]


def check_stages(stages: tuple[str, ...]) -> None:
    """NoDataError naming the stages a backfill does not know."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise NoDataError(f"unknown stage(s) {unknown}; choose from {list(STAGES)}")


def current_outputs(layout: Layout) -> tuple[dict[str, set[date]], dict[str, set[date]]]:
    """(done, stale): per stage, the days whose output exists, and those marked stale."""
    with Ledger(layout.ledger) as ledger:
        stale = {stage: set(ledger.stale(out)) for stage, out in _OUTPUT.items()}
    done = {"features": set(layout.features.dates()), "score": set(layout.scores.dates())}
    return done, stale


def plan(
    days: list[date],
    stages: tuple[str, ...],
    done: dict[str, set[date]],
    stale: dict[str, set[date]],
    force: bool = False,
) -> dict[date, list[str]]:
    """The stages each day needs: those whose output is missing or stale (all with `force`).
    Rebuilding a day's features makes its scores stale, so score follows features."""
    todo: dict[date, list[str]] = {}
    for day in days:
        needed: list[str] = []
        for stage in stages:
            upstream_rebuilt = stage == "score" and "features" in needed
            if force or upstream_rebuilt or day not in done[stage] or day in stale[stage]:
                needed.append(stage)
        todo[day] = needed
    return todo
