"""Flow: features -> each model family fitted, compared, logged, registered, promoted, on its
own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency

from cellpulse import progress
from cellpulse.errors import NoDataError, SpecMismatchError
from cellpulse.features.spec import FeatureParams, FeatureSpec
from cellpulse.features.store import (
    SamplePlan,
    SampleSummary,
    feature_days,
    lake_spec,
    load_events,
    read_cell_kpis,
    read_features,
    read_training_sample,
)
from cellpulse.features.targets import LABEL_KPIS
from cellpulse.flows.common import booster_trainer, retry_on_io
from cellpulse.models import tracking, tracking_runs, tuning
from cellpulse.models.anomaly import TARGETS
from cellpulse.models.boosting import Trainer, train_local
from cellpulse.models.family import ModelFamily, families
from cellpulse.models.params import ModelParams
from cellpulse.models.profile import HourProfile, hour_sums
from cellpulse.models.promotion import decide_promotion
from cellpulse.models.training import Candidate, TrainingData
from cellpulse.settings import Settings, TrainSettings
from cellpulse.window import DayWindow


@dataclass(frozen=True)
class TrainResult:
    """Per family: the registered model, its candidate, the champion's metrics on the same
    hold-out (None without a comparable champion), and what a search chose; and, for each
    family that could not train, why."""

    logged: dict[str, tracking.Logged]
    candidates: dict[str, Candidate]
    champion_metrics: dict[str, dict[str, float] | None]
    tuning: dict[str, str] = field(default_factory=dict)  # family -> what the search chose
    not_trained: dict[str, str] = field(default_factory=dict)  # family -> why not
    sample: SampleSummary | None = None  # what the training data was sampled from


@task(name="load-training-data", retries=1, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def load_training_data(
    settings: Settings, window: DayWindow, spec: FeatureSpec
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(features, KPIs) of the days in `window` that have features; refuses features of
    another spec. KPIs are read for those days only, not for every ingested day: the KPI
    lake keeps far more history than features do (`housekeeping.retention_days`)."""
    layout = settings.layout
    days = window.resolve(layout.features.dates(), "features", fix="run `cellpulse features`")
    features = read_features(layout, DayWindow(days[0], days[-1]), spec)
    kpis = layout.kpi.read(days[0], days[-1])
    return features, kpis


@task(name="load-training-sample", retries=1, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def load_training_sample(
    settings: Settings, window: DayWindow, spec: FeatureSpec
) -> tuple[pl.DataFrame, pl.DataFrame, SampleSummary]:
    """(features, KPIs, what was sampled) of the days in `window` that have features:
    feature rows sampled while reading (`train.max_train_rows` of `train.max_train_cells`
    cells, whole hold-out days of `train.holdout_cells`), and those cells' KPIs the
    congestion labels read, so memory stays flat in the network's size."""
    layout = settings.layout
    days = window.resolve(layout.features.dates(), "features", fix="run `cellpulse features`")
    sample = read_training_sample(layout, days, spec, SamplePlan.of(settings.train))
    kpis = read_cell_kpis(layout, days, sample.cells, LABEL_KPIS)
    return sample.features, kpis, sample.summary


@task(name="learn-hour-profile", retries=1, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def learn_hour_profile(
    settings: Settings, window: DayWindow, spec: FeatureSpec
) -> HourProfile | None:
    """Every cell's hour-of-day profile of the watched KPIs on the fitting days (the days
    before the hold-out): all cells, not only the sampled ones, so every cell is judged
    against its own profile; read a day and a few columns at a time. None when the window
    holds no fitting day."""
    layout = settings.layout
    days = window.resolve(layout.features.dates(), "features", fix="run `cellpulse features`")
    fitting = days[: -settings.train.holdout_days]
    if not fitting:
        return None
    watched = [t.name for t in TARGETS]
    return HourProfile.from_sums(
        hour_sums(day, watched) for day in feature_days(layout, fitting, spec, watched)
    )


@task(name="fit-family", cache_policy=NO_CACHE, task_run_name="fit-{family.name}")
def fit_candidate(
    family: ModelFamily,
    data: TrainingData,
    params: ModelParams,
    spec_hash: str,
    trainer: Trainer = train_local,
) -> Candidate:
    """The family's model fitted and judged on its hold-out, next to its baselines."""
    return family.fit(data, params, spec_hash, trainer)


@task(name="evaluate-champion", cache_policy=NO_CACHE)
def evaluate_champion(
    family: ModelFamily, candidate: Candidate, data: TrainingData, params: ModelParams
) -> dict[str, float] | None:
    """The current champion's metrics on the challenger's hold-out (None if there is no
    champion, or it was trained on another feature spec and cannot read these features)."""
    if tracking.champion_version(family.name) is None:
        return None
    champion = tracking.load_champion(family.name)
    if champion.model.spec_hash != candidate.model.spec_hash:
        return None
    try:
        return family.evaluate(candidate, champion.model, data, params)
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
    run_id: str | None = None,
) -> tracking.Logged:
    """Log the candidate to MLflow (into `run_id`, the training run open since it started
    fitting), register it, and make it champion if the promotion rule says so (the
    decision and its reason are logged with it)."""
    decision = decide_promotion(
        candidate.metrics, champion_metrics, candidate.baseline_reference(), candidate.rule
    )
    # The server may have gone away while the models were fitting: a clear, retried error
    # before anything is written, never a half-registered model.
    tracking.check_tracking(settings)
    example = candidate.split.holdout.head(5)
    return tracking.log_candidate(
        candidate, settings, decision, champion_metrics, example, tags, run_id
    )


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


def fit_with(
    family: ModelFamily,
    params: ModelParams,
    spec_hash: str,
    trainer: Trainer,
    train: TrainSettings,
    data: TrainingData,
) -> Candidate:
    """The family fitted on `data` with the `train` parameters (the configured ones, or a
    trial's)."""
    return fit_candidate(family, data, replace(params, train=train), spec_hash, trainer)


def choose(
    family: ModelFamily,
    fit: Callable[[TrainSettings, TrainingData], Candidate],
    data: TrainingData,
    settings: Settings,
    tune: int,
    tune_minutes: float,
    tags: dict[str, str],
) -> Chosen:
    """The family's candidate: fitted with the configured parameters, or, with `tune` > 0,
    refitted with the best of up to `tune` parameter sets, chosen on a validation window
    before the hold-out (each trial a nested MLflow run, open while it fits)."""
    if not tune:
        return Chosen(fit(settings.train, data), tags)
    with tracking_runs.tuning_runs(family.name, settings, tags) as runs:
        tuned = tuning.tune(
            runs.tracked(fit),
            data,
            settings.train,
            tune,
            tune_minutes * 60,
            settings.train.seed,
            description=f"tuning {family.name}: trials",
            refit=fit,
        )
        runs.finish(tuned.trials, tuned.chosen)
    search = {
        "tuning.run_id": runs.run_id,
        "tuning.trial": str(tuned.chosen.number),
        "tuning.trials": str(len(tuned.trials)),
    }
    described = tuning.describe(tuned.chosen, tuned.trials, runs.run_id)
    return Chosen(tuned.candidate, tags | search, described)


def not_trained(family: ModelFamily, error: NoDataError) -> str:
    """Why a family has no new model, for the summary."""
    return f"not trained — {error} ({family.settings_hint})"


@flow(name="train")
def train_flow(
    settings: Settings,
    window: DayWindow = DayWindow(),
    labels: Path | None = None,
    tune: int = 0,
    tune_minutes: float = 30.0,
    only: tuple[str, ...] | None = None,
) -> TrainResult:
    """Train each model family (or those named in `only`) on the days of `window` that have
    features (default: every such day). Each family fits, is judged and is registered on
    its own: one that cannot train (no congestion, too few days, KPIs missing) is reported
    in `not_trained` and never stops the others. With `tune` > 0, each family first
    searches up to `tune` parameter sets (within `tune_minutes`), logged as nested runs."""
    tracking.configure(settings)
    tracking.check_tracking(settings)  # before hours of fitting, not after
    spec = lake_spec(settings.layout, FeatureParams.of(settings))
    features, kpis, sampled = load_training_sample(settings, window, spec)
    labels_path = settings.layout.labels_file(labels)
    profile = learn_hour_profile(settings, window, spec)
    data = TrainingData(features, kpis, load_events(labels_path), profile)
    logger = get_run_logger()
    logger.info(
        f"train: {features.height:,} rows of features, {features['cell_id'].n_unique()} cells, "
        f"days {features['ts'].min():%Y-%m-%d} to {features['ts'].max():%Y-%m-%d}; labels "
        f"{labels_path if data.events is not None else 'none'}"
    )
    tags = data_tags(spec.hash(), labels_path, data.events, given=labels is not None)
    params = ModelParams.of(settings)
    chosen, skipped, logged, champions = {}, {}, {}, {}
    # One training at a time across every deployment and manual run: where the server has
    # the limit (`cellpulse serve` creates it), a second training waits for the first.
    with concurrency(TRAINING_LIMIT, occupy=1), booster_trainer(settings) as trainer:
        for family in progress.track(families(), "train: model families", total=None):
            if only is not None and family.name not in only:
                continue
            fit = partial(fit_with, family, params, spec.hash(), trainer)
            try:
                # The run is open from the first fit to the registered version, so its
                # duration in MLflow is the training's.
                with tracking.training_run(family.name, settings, tags) as run_id:
                    pick = choose(family, fit, data, settings, tune, tune_minutes, tags)
                    champion = evaluate_champion(family, pick.candidate, data, params)
                    logged[family.name] = register(
                        pick.candidate, champion, settings, pick.tags, run_id
                    )
            except NoDataError as exc:
                skipped[family.name] = not_trained(family, exc)
                logger.info(f"train {family.name}: {skipped[family.name]}")
                continue
            chosen[family.name], champions[family.name] = pick, champion
            decision = logged[family.name].decision
            logger.info(
                f"train {family.name}: model {logged[family.name].name} version "
                f"{logged[family.name].version} "
                f"{'promoted to champion' if decision.promote else 'not promoted'}: "
                f"{decision.reason}"
            )
    candidates = {f: pick.candidate for f, pick in chosen.items()}
    searched = {f: pick.searched for f, pick in chosen.items() if pick.searched}
    return TrainResult(logged, candidates, champions, searched, skipped, sampled)
