"""Flow: backfill a range of days, stage by stage (features, then score), one day at a time.

Idempotent and resumable: a day whose output exists and is not marked stale is skipped, so a
backfill interrupted at day 40 of 90 picks up at day 40 when run again. Progress shows in
the CLI (a bar) and in the Prefect UI (a progress artifact).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date

from prefect import flow
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from cellpulse import progress
from cellpulse.errors import NoDataError
from cellpulse.features.store import days_between
from cellpulse.flows.features import build_each_day
from cellpulse.flows.score import score_flow
from cellpulse.ledger import Ledger
from cellpulse.settings import Settings

STAGES = ("features", "score")


@dataclass
class BackfillSummary:
    days: list[date]
    stages: tuple[str, ...]
    ran: dict[date, list[str]] = field(default_factory=dict)  # day -> stages run
    seconds: dict[date, float] = field(default_factory=dict)

    @property
    def skipped(self) -> list[date]:
        return [d for d in self.days if not self.ran.get(d)]


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


@flow(name="backfill")
def backfill_flow(
    settings: Settings,
    start: date,
    end: date,
    stages: tuple[str, ...] = STAGES,
    force: bool = False,
) -> BackfillSummary:
    """Run `stages` for every ingested day in [start, end] that needs them."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise NoDataError(f"unknown stage(s) {unknown}; choose from {list(STAGES)}")
    ingested = set(settings.layout.kpi.dates())
    days = [d for d in days_between(start, end) if d in ingested]
    if not days:
        raise NoDataError(f"no ingested KPIs between {start} and {end}; run `cellpulse ingest`")
    with Ledger(settings.layout.ledger) as ledger:
        stale = {"features": set(ledger.stale("features")), "score": set(ledger.stale("scores"))}
    done = {
        "features": set(settings.layout.features.dates()),
        "score": set(settings.layout.scores.dates()),
    }
    todo = plan(days, stages, done, stale, force)
    summary = BackfillSummary(days, stages)
    artifact = create_progress_artifact(
        0.0, key="backfill", description=f"cellpulse backfill {start}..{end}"
    )
    for i, day in enumerate(progress.track(days, "backfill: days", total=len(days)), 1):
        t0 = time.perf_counter()
        if "features" in todo[day]:
            build_each_day(settings, [day])
        if "score" in todo[day]:
            score_flow(settings, [day])
        summary.ran[day] = todo[day]
        summary.seconds[day] = time.perf_counter() - t0
        update_progress_artifact(artifact, 100.0 * i / len(days))
    return summary
