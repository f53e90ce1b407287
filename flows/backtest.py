"""Flow: rolling-origin backtest of every model family, logged to MLflow as a parent run
(mean and spread per metric) with one nested run per fold."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from cellpulse import progress
from cellpulse.features.spec import FeatureParams
from cellpulse.features.store import lake_spec, load_events
from cellpulse.flows.train import load_training_data
from cellpulse.models import backtest, tracking, tracking_runs
from cellpulse.models.backtest import MIN_TRAIN_DAYS, Fold
from cellpulse.models.family import families
from cellpulse.models.params import ModelParams
from cellpulse.models.training import TrainingData
from cellpulse.settings import Settings
from cellpulse.window import DayWindow


@dataclass(frozen=True)
class BacktestResult:
    """Each family's folds and the MLflow run that summarises them."""

    folds: dict[str, list[Fold]]  # family -> folds, oldest first
    runs: dict[str, str]  # family -> MLflow parent run id


@flow(name="backtest")
def backtest_flow(settings: Settings, folds: int = 3, labels: Path | None = None) -> BacktestResult:
    """Train and evaluate both families on `folds` successive origins; each fold's test
    period is the `train.holdout_days` after its training data."""
    tracking.configure(settings)
    spec = lake_spec(settings.layout, FeatureParams.of(settings))
    spec_hash = spec.hash()
    features, kpis = load_training_data(settings, DayWindow(), spec)
    labels_path = settings.layout.labels_file(labels)
    events = load_events(labels_path)
    days = features["ts"].dt.date().unique().sort().to_list()
    ends = backtest.fold_ends(days, folds, settings.train.holdout_days, MIN_TRAIN_DAYS)
    params = ModelParams.of(settings)
    results: dict[str, list[Fold]] = {family.name: [] for family in families()}
    tags = {"feature_spec_hash": spec_hash, "data.labels": str(labels_path)}
    # Each fold's run is open while the fold trains; each family's parent until its summary.
    with tracking_runs.backtest_runs(settings, tags, features) as mlflow_runs:
        for index, end in enumerate(progress.track(ends, "backtest: folds", len(ends)), 1):
            data = TrainingData(backtest.up_to(features, end), kpis, events)
            for family in progress.track(families(), f"backtest fold {index}: families", None):
                fit = partial(backtest.fit_fold, family, index, data, params, spec_hash)
                results[family.name].append(mlflow_runs.fold(family.name, index, fit))
        for family_name, family_folds in results.items():
            mlflow_runs.finish(family_name, family_folds)
        runs = dict(mlflow_runs.parents)
    create_markdown_artifact(
        key="backtest", markdown=backtest.markdown(results), description="cellpulse backtest"
    )
    get_run_logger().info(
        f"backtest: {len(ends)} folds of {settings.train.holdout_days} test days, ending "
        f"{ends[0]}..{ends[-1]}; "
        + "; ".join(
            f"{f}: {sum(not x.skipped for x in fs)} models trained, MLflow run {runs[f]}"
            for f, fs in results.items()
        )
    )
    return BacktestResult(results, runs)
