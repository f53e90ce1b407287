"""Flows: the daily pipeline, ingest -> features -> train (the families without a champion)
-> score, each stage doing only what is new or stale, so a second run with no new data does
nothing and changes nothing; and the every-ROP pipeline, which does a delivery's ROPs only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from cellpulse import lake
from cellpulse.features.spec import FeatureParams, FeatureSpec
from cellpulse.features.store import FeatureSummary, build_rops, lake_spec, new_rops
from cellpulse.flows.common import retry_on_io
from cellpulse.flows.features import features_flow, stale_days
from cellpulse.flows.ingest import ingest_flow
from cellpulse.flows.score import RopScores, ScoreSummary, next_state, score_flow, score_rops_flow
from cellpulse.flows.train import TrainResult, train_flow
from cellpulse.ingest import IngestSummary
from cellpulse.models import tracking
from cellpulse.models.anomaly import EXPLAIN_SPAN
from cellpulse.publish import advance_alerts
from cellpulse.ropstate import RopState, context_rops, load_state, save_state
from cellpulse.settings import Settings


@dataclass(frozen=True)
class PipelineResult:
    """What each stage of a pipeline run did (None: the stage had nothing to do)."""

    ingest: IngestSummary
    features: FeatureSummary | None
    train: TrainResult | None
    score: ScoreSummary | None


def families_to_train(features_changed: bool) -> tuple[str, ...]:
    """The families the pipeline trains: those without a champion, once new features are in
    (or, for a family never trained, on the first run); each scores with its baseline
    meanwhile. A family with a champion is retrained by `cellpulse train` or a schedule."""
    return tuple(
        name
        for name in tracking.MODEL_NAMES
        if tracking.champion_version(name) is None
        and (features_changed or not tracking.list_versions(name))
    )


def batch_stages(
    settings: Settings,
) -> tuple[FeatureSummary | None, TrainResult | None, ScoreSummary | None]:
    """After ingest: build the days that changed, train the families that have no champion
    yet, and score every day whose scores are stale."""
    features = features_flow(settings, only_stale=True)
    wanted = families_to_train(features is not None)
    trained = train_flow(settings, only=wanted) if wanted else None
    built = set(settings.layout.features.dates())
    days = [d for d in stale_days(settings, "scores") if d in built]
    scored = score_flow(settings, days) if days else None
    return features, trained, scored


@flow(name="daily-pipeline")
def pipeline_flow(
    settings: Settings, paths: list[Path] | None = None, mapping: str | None = None
) -> PipelineResult:
    """Ingest `paths` (default: the landing folder), build the days that changed, train the
    families that have no champion yet, and score every day whose scores are stale: a
    family without a champion (not trained, or its model lost to its baseline) publishes
    its baseline's scores, marked as such."""
    tracking.configure(settings)
    ingested = ingest_flow(settings, paths, mapping=mapping)
    features, trained, scored = batch_stages(settings)
    get_run_logger().info(
        f"daily pipeline: {ingested.count('ingested')} files ingested; features "
        + (f"rebuilt for {len(features.days)} days" if features else "unchanged")
        + "; trained "
        + (", ".join(trained.logged) if trained and trained.logged else "nothing")
        + f"; scored {len(scored.days) if scored else 0} days"
    )
    return PipelineResult(ingested, features, trained, scored)


@dataclass(frozen=True)
class RopResult:
    """What an every-ROP run did: `how` it went ("rops": the new ROPs alone; "batch": the
    daily pipeline's stages, when there was no state to go on; "nothing new"), with the
    published ROPs (`rops`) or the batch's stages (`batch`)."""

    ingest: IngestSummary
    how: str
    why: str
    rops: RopScores | None = None
    batch: PipelineResult | None = None


def rop_plan(
    state: RopState | None, spec: FeatureSpec, new: int, rop_minutes: int
) -> tuple[str, str]:
    """How an every-ROP run goes (see RopResult.how), and why: the new ROPs alone when the
    last run left a state for this spec and at most a day of ROPs is new; the batch else."""
    if state is None:
        return "batch", "no every-ROP state yet: the daily pipeline's stages, then a state"
    if state.spec_hash != spec.hash():
        return "batch", f"feature spec changed ({state.spec_hash} -> {spec.hash()})"
    if new == 0:
        return "nothing new", f"no ROP after {state.newest:%Y-%m-%d %H:%M} UTC in the lake"
    if new > 24 * 60 // rop_minutes:
        return "batch", f"{new} new ROPs, more than a day: whole days are cheaper"
    return "rops", f"{new} new ROP(s) after {state.newest:%Y-%m-%d %H:%M} UTC"


@task(name="build-rops", retries=1, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def build_rops_task(settings: Settings, spec: FeatureSpec, since: datetime) -> pl.DataFrame:
    """The features of the ROPs from `since` on (`features.store.build_rops`)."""
    return build_rops(settings.layout, spec, since, FeatureParams.of(settings))


def keep_rops(settings: Settings) -> int:
    """The ROPs of context an every-ROP run keeps for the next (`ropstate.context_rops`)."""
    return context_rops(settings.alerts.consecutive_rops, EXPLAIN_SPAN, settings.rop_minutes)


def seed_state(settings: Settings, spec: FeatureSpec, scores: pl.DataFrame | None) -> None:
    """After a batch: the state the next every-ROP run goes on, from the scores the batch
    published (or, when it scored nothing, the newest day of lake/scores) and the feature
    rows of the ROPs before their newest. No state when nothing was ever scored."""
    layout = settings.layout
    if scores is None or scores.is_empty():
        days = layout.scores.dates()
        if not days:
            return
        scores = layout.scores.read(days[-1], days[-1])
    newest = scores["ts"].max()
    assert isinstance(newest, datetime)
    first = newest - timedelta(minutes=settings.rop_minutes * keep_rops(settings))
    files = layout.features.files(first.date(), newest.date())
    if not files:
        return
    context = lake.scan(files).filter((pl.col("ts") > first) & (pl.col("ts") <= newest)).collect()
    _, still_open = advance_alerts(
        None, scores, settings.alerts.clear_after_rops, settings.rop_minutes
    )
    save_state(layout.rop_state, RopState(newest, spec.hash(), context, still_open))


@flow(name="rop-pipeline")
def rop_flow(
    settings: Settings, paths: list[Path] | None = None, mapping: str | None = None
) -> RopResult:
    """Ingest `paths` (default: the landing folder), then build, score and publish only the
    ROPs after the newest one published: features from a bounded lookback, scores after a
    few ROPs of carried context, alerts continued from the open ones. What it publishes
    equals what the daily pipeline publishes for the same rows.

    Without a state (the first run, a changed spec, more than a day of backlog), it runs
    the daily pipeline's stages and leaves a state. Rows of ROPs already published (a late
    or corrected delivery) are left to the daily pipeline: ingest marked their day stale."""
    tracking.configure(settings)
    ingested = ingest_flow(settings, paths, mapping=mapping)
    spec = lake_spec(settings.layout, FeatureParams.of(settings))
    state = load_state(settings.layout.rop_state)
    rop = timedelta(minutes=settings.rop_minutes)
    since = state.newest + rop if state is not None else None
    count = new_rops(settings.layout, since, settings.rop_minutes).size if since else 0
    how, why = rop_plan(state, spec, count, settings.rop_minutes)
    if how == "batch":
        batch = PipelineResult(ingested, *batch_stages(settings))
        seed_state(settings, spec, batch.score.scores if batch.score else None)
        return RopResult(ingested, how, why, batch=batch)
    if how == "nothing new":
        return RopResult(ingested, how, why)
    assert state is not None and since is not None
    features = build_rops_task(settings, spec, since)
    published, still_open = score_rops_flow(settings, spec, features, state)
    save_state(
        settings.layout.rop_state,
        next_state(state, features, still_open, settings.rop_minutes, keep_rops(settings)),
    )
    return RopResult(ingested, how, why, rops=published)
