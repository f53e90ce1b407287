"""Flow: features -> both model families fitted, compared, logged, registered, promoted."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency

from cellpulse.errors import SpecMismatchError
from cellpulse.features.spec import spec_for
from cellpulse.features.store import load_events, read_features, resolve_days
from cellpulse.flows.common import booster_trainer, retry_on_io
from cellpulse.models import tracking, training, tuning
from cellpulse.models.boosting import Trainer, train_local
from cellpulse.models.promotion import decide_promotion
from cellpulse.models.training import Candidate
from cellpulse.settings import Settings, TrainSettings


@dataclass(frozen=True)
class TrainResult:
    logged: dict[str, tracking.Logged]
    candidates: dict[str, Candidate]
    champion_metrics: dict[str, dict[str, float] | None]
    tuning: dict[str, str] = field(default_factory=dict)  # family -> what the search chose


@task(name="load-training-data", retries=1, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def load_training_data(
    settings: Settings, start: date | None, end: date | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    days = resolve_days(settings, start, end)
    spec = spec_for(settings)
    features = read_features(settings, days[0], days[-1], spec)
    kpis = settings.layout.kpi.read(days[0], days[-1])
    return features, kpis


@task(name="fit-anomaly", cache_policy=NO_CACHE)
def fit_anomaly(
    features: pl.DataFrame,
    events: pl.DataFrame | None,
    settings: Settings,
    spec_hash: str,
    trainer: Trainer = train_local,
) -> Candidate:
    return training.train_anomaly(features, events, settings, spec_hash, trainer)


@task(name="fit-congestion", cache_policy=NO_CACHE)
def fit_congestion(
    features: pl.DataFrame,
    kpis: pl.DataFrame,
    settings: Settings,
    spec_hash: str,
    trainer: Trainer = train_local,
) -> Candidate:
    return training.train_congestion(features, kpis, settings, spec_hash, trainer)


@task(name="evaluate-champion", cache_policy=NO_CACHE)
def evaluate_champion(
    candidate: Candidate, events: pl.DataFrame | None, kpis: pl.DataFrame, settings: Settings
) -> dict[str, float] | None:
    """The current champion's metrics on the challenger's hold-out (None if there is no
    champion, or it was trained on another feature spec and cannot read these features)."""
    if tracking.champion_version(candidate.family) is None:
        return None
    champion = tracking.load_champion(candidate.family)
    if champion.model.spec_hash != candidate.model.spec_hash:
        return None
    return training.evaluate_on_holdout(candidate, champion.model, events, kpis, settings)


@task(
    name="register-model",
    retries=2,
    retry_delay_seconds=3,
    retry_condition_fn=retry_on_io,
    cache_policy=NO_CACHE,
)
def register(
    candidate: Candidate,
    champion_metrics: dict[str, float] | None,
    settings: Settings,
    tags: dict[str, str],
) -> tracking.Logged:
    decision = decide_promotion(
        candidate.metrics, champion_metrics, candidate.baseline_reference(), candidate.rule
    )
    # The server may have gone away while the models were fitting: a clear, retried error
    # before anything is written, never a half-registered model.
    tracking.check_tracking(settings)
    example = candidate.split.holdout.head(5)
    return tracking.log_candidate(candidate, settings, decision, champion_metrics, example, tags)


TRAINING_LIMIT = "cellpulse-training"


@flow(name="train")
def train_flow(
    settings: Settings,
    start: date | None = None,
    end: date | None = None,
    labels: Path | None = None,
    tune: int = 0,
    tune_minutes: float = 30.0,
) -> TrainResult:
    """Train both families on [start, end] (default: every day with features). With
    `tune` > 0, each family first searches up to `tune` parameter sets (within
    `tune_minutes`), logged as nested runs, and registers the best one."""
    tracking.configure(settings)
    tracking.check_tracking(settings)  # before hours of fitting, not after
    spec = spec_for(settings)
    features, kpis = load_training_data(settings, start, end)
    labels_path = labels or settings.layout.truth_events
    events = load_events(labels_path)
    tags = {
        "feature_spec_hash": spec.hash(),
        "data.source": "simulator" if events is not None and labels is None else "oss",
        "data.labels": str(labels_path) if events is not None else "none",
    }

    def fit(family: str, train: TrainSettings, trainer: Trainer) -> Candidate:
        trial_settings = settings.model_copy(update={"train": train})
        if family == training.ANOMALY:
            return fit_anomaly(features, events, trial_settings, spec.hash(), trainer)
        return fit_congestion(features, kpis, trial_settings, spec.hash(), trainer)

    candidates: dict[str, Candidate] = {}
    searched: dict[str, str] = {}
    family_tags = {family: dict(tags) for family in (training.ANOMALY, training.CONGESTION)}
    # One training at a time across every deployment and manual run: where the server has
    # the limit (`cellpulse serve` creates it), a second training waits for the first.
    with concurrency(TRAINING_LIMIT, occupy=1), booster_trainer(settings) as trainer:
        for family in (training.ANOMALY, training.CONGESTION):
            if not tune:
                candidates[family] = fit(family, settings.train, trainer)
                continue
            trials = tuning.search(
                lambda train, f=family: fit(f, train, trainer),  # type: ignore[misc]
                settings.train,
                tune,
                tune_minutes * 60,
                settings.train.seed,
            )
            chosen = tuning.best(trials)
            parent = tracking.log_trials(family, trials, chosen, settings, tags)
            family_tags[family] |= {"tuning.run_id": parent, "tuning.trial": str(chosen.number)}
            candidates[family] = chosen.candidate
            searched[family] = (
                f"trial {chosen.number} of {len(trials)} won "
                f"({chosen.candidate.rule.primary} {chosen.primary:.4f}; "
                + ", ".join(f"{k}={v}" for k, v in chosen.params.items())
                + f"); trials in MLflow run {parent}"
            )
    logged, champions = {}, {}
    for family, candidate in candidates.items():
        try:
            champions[family] = evaluate_champion(candidate, events, kpis, settings)
        except SpecMismatchError:
            champions[family] = None
        logged[family] = register(candidate, champions[family], settings, family_tags[family])
    return TrainResult(logged, candidates, champions, searched)
