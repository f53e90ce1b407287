"""Flow: features -> both model families fitted, compared, logged, registered, promoted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import polars as pl
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency

from cellpulse.errors import SpecMismatchError
from cellpulse.features.spec import FeatureParams, spec_for
from cellpulse.features.store import ingested_days, load_events, read_features
from cellpulse.flows.common import booster_trainer, retry_on_io
from cellpulse.models import tracking, training, tuning
from cellpulse.models.boosting import Trainer, train_local
from cellpulse.models.promotion import decide_promotion
from cellpulse.models.training import Candidate
from cellpulse.settings import Settings, TrainSettings
from cellpulse.window import DayWindow

FAMILIES = (training.ANOMALY, training.CONGESTION)


@dataclass(frozen=True)
class TrainResult:
    """Per family: the registered model, its candidate, the champion's metrics on the same
    hold-out (None without a comparable champion), and what a search chose."""

    logged: dict[str, tracking.Logged]
    candidates: dict[str, Candidate]
    champion_metrics: dict[str, dict[str, float] | None]
    tuning: dict[str, str] = field(default_factory=dict)  # family -> what the search chose


@task(name="load-training-data", retries=1, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def load_training_data(settings: Settings, window: DayWindow) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(features, KPIs) of the ingested days in `window`; refuses features of another spec."""
    days = ingested_days(settings.layout, window)
    features = read_features(
        settings.layout, DayWindow(days[0], days[-1]), spec_for(FeatureParams.of(settings))
    )
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
    """The anomaly model fitted and judged on its hold-out, next to its baselines."""
    return training.train_anomaly(features, events, settings, spec_hash, trainer)


@task(name="fit-congestion", cache_policy=NO_CACHE)
def fit_congestion(
    features: pl.DataFrame,
    kpis: pl.DataFrame,
    settings: Settings,
    spec_hash: str,
    trainer: Trainer = train_local,
) -> Candidate:
    """The congestion model fitted and judged on its hold-out, next to its baselines."""
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
    try:
        return training.evaluate_on_holdout(candidate, champion.model, events, kpis, settings)
    except SpecMismatchError:
        return None


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
    """Log the candidate to MLflow, register it, and make it champion if the promotion rule
    says so (the decision and its reason are logged with it)."""
    decision = decide_promotion(
        candidate.metrics, champion_metrics, candidate.baseline_reference(), candidate.rule
    )
    # The server may have gone away while the models were fitting: a clear, retried error
    # before anything is written, never a half-registered model.
    tracking.check_tracking(settings)
    example = candidate.split.holdout.head(5)
    return tracking.log_candidate(candidate, settings, decision, champion_metrics, example, tags)


TRAINING_LIMIT = "cellpulse-training"


@dataclass(frozen=True)
class Chosen:
    """A family's candidate, the tags it is logged with, and what its search chose."""

    candidate: Candidate
    tags: dict[str, str]
    searched: str = ""


def data_tags(
    spec_hash: str, labels: Path, events: pl.DataFrame | None, given: bool
) -> dict[str, str]:
    """What a training run read: the feature spec, and which labels (`given` by the user,
    else the simulator's ground truth, if it exists)."""
    return {
        "feature_spec_hash": spec_hash,
        "data.source": "simulator" if events is not None and not given else "oss",
        "data.labels": str(labels) if events is not None else "none",
    }


def fit_family(
    features: pl.DataFrame,
    kpis: pl.DataFrame,
    events: pl.DataFrame | None,
    settings: Settings,
    spec_hash: str,
    trainer: Trainer,
    family: str,
    train: TrainSettings,
) -> Candidate:
    """One family fitted with the `train` parameters (the configured ones, or a trial's)."""
    trial = settings.model_copy(update={"train": train})
    if family == training.ANOMALY:
        return fit_anomaly(features, events, trial, spec_hash, trainer)
    return fit_congestion(features, kpis, trial, spec_hash, trainer)


def choose(
    family: str,
    fit: Callable[[str, TrainSettings], Candidate],
    settings: Settings,
    tune: int,
    tune_minutes: float,
    tags: dict[str, str],
) -> Chosen:
    """The family's candidate: fitted with the configured parameters, or, with `tune` > 0,
    the best of up to `tune` parameter sets (each trial a nested MLflow run)."""
    if not tune:
        return Chosen(fit(family, settings.train), tags)
    trials = tuning.search(
        lambda train: fit(family, train),
        settings.train,
        tune,
        tune_minutes * 60,
        settings.train.seed,
    )
    chosen = tuning.best(trials)
    parent = tracking.log_trials(family, trials, chosen, settings, tags)
    search = {"tuning.run_id": parent, "tuning.trial": str(chosen.number)}
    return Chosen(chosen.candidate, tags | search, tuning.describe(chosen, trials, parent))


@flow(name="train")
def train_flow(
    settings: Settings,
    window: DayWindow = DayWindow(),
    labels: Path | None = None,
    tune: int = 0,
    tune_minutes: float = 30.0,
) -> TrainResult:
    """Train both families on the ingested days of `window` (default: every day with
    features). With `tune` > 0, each family first searches up to `tune` parameter sets
    (within `tune_minutes`), logged as nested runs, and registers the best one."""
    tracking.configure(settings)
    tracking.check_tracking(settings)  # before hours of fitting, not after
    spec_hash = spec_for(FeatureParams.of(settings)).hash()
    features, kpis = load_training_data(settings, window)
    labels_path = settings.layout.labels_file(labels)
    events = load_events(labels_path)
    tags = data_tags(spec_hash, labels_path, events, given=labels is not None)
    # One training at a time across every deployment and manual run: where the server has
    # the limit (`cellpulse serve` creates it), a second training waits for the first.
    with concurrency(TRAINING_LIMIT, occupy=1), booster_trainer(settings) as trainer:
        fit = partial(fit_family, features, kpis, events, settings, spec_hash, trainer)
        chosen = {f: choose(f, fit, settings, tune, tune_minutes, tags) for f in FAMILIES}
    logged, champions = {}, {}
    for family, pick in chosen.items():
        champions[family] = evaluate_champion(pick.candidate, events, kpis, settings)
        logged[family] = register(pick.candidate, champions[family], settings, pick.tags)
    candidates = {f: pick.candidate for f, pick in chosen.items()}
    searched = {f: pick.searched for f, pick in chosen.items() if pick.searched}
    return TrainResult(logged, candidates, champions, searched)
