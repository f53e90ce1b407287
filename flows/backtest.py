"""Flow: rolling-origin backtest of both model families, logged to MLflow as a parent run
(mean and spread per metric) with one nested run per fold."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
from prefect import flow
from prefect.artifacts import create_markdown_artifact

from cellpulse.errors import NoDataError
from cellpulse.features.spec import spec_for
from cellpulse.features.store import load_events
from cellpulse.flows.train import load_training_data
from cellpulse.models import backtest, tracking, training
from cellpulse.models.backtest import Fold
from cellpulse.settings import Settings

MIN_TRAIN_DAYS = 3


@dataclass(frozen=True)
class BacktestResult:
    folds: dict[str, list[Fold]]  # family -> folds, oldest first
    runs: dict[str, str]  # family -> MLflow parent run id


def _fit(
    family: str,
    index: int,
    data: pl.DataFrame,
    events: pl.DataFrame | None,
    kpis: pl.DataFrame,
    settings: Settings,
    spec_hash: str,
) -> Fold:
    split = training.split_by_time(data, settings.train.holdout_days)
    try:
        if family == training.ANOMALY:
            candidate = training.train_anomaly(data, events, settings, spec_hash)
        else:
            candidate = training.train_congestion(data, kpis, settings, spec_hash)
    except NoDataError as exc:
        return Fold(index, split.train_days, split.holdout_days, skipped=str(exc))
    return Fold(
        index, split.train_days, split.holdout_days, candidate.metrics | candidate.baselines
    )


def report_markdown(folds: dict[str, list[Fold]]) -> str:
    lines = ["# cellpulse backtest", ""]
    for family, family_folds in folds.items():
        lines += [f"## {family}", "", "| metric | mean | std | folds |", "|---|---:|---:|---:|"]
        for name, (mean, sd, n) in backtest.summarise(family_folds).items():
            lines.append(f"| {name} | {mean:.4f} | {sd:.4f} | {n} |")
        skipped = [f"fold {f.index}: {f.skipped}" for f in family_folds if f.skipped]
        lines += ["", *skipped, ""]
    return "\n".join(lines)


@flow(name="backtest")
def backtest_flow(settings: Settings, folds: int = 3, labels: Path | None = None) -> BacktestResult:
    """Train and evaluate both families on `folds` successive origins; each fold's test
    period is the `train.holdout_days` after its training data."""
    tracking.configure(settings)
    spec = spec_for(settings)
    features, kpis = load_training_data(settings, None, None)
    labels_path = labels or settings.layout.truth_events
    events = load_events(labels_path)
    days = features["ts"].dt.date().unique().sort().to_list()
    ends = backtest.fold_ends(days, folds, settings.train.holdout_days, MIN_TRAIN_DAYS)
    results: dict[str, list[Fold]] = {training.ANOMALY: [], training.CONGESTION: []}
    for index, end in enumerate(ends, 1):
        data = backtest.up_to(features, end)
        for family, family_folds in results.items():
            family_folds.append(_fit(family, index, data, events, kpis, settings, spec.hash()))
    tags = {"feature_spec_hash": spec.hash(), "data.labels": str(labels_path)}
    runs = {
        family: tracking.log_backtest(family, family_folds, settings, tags)
        for family, family_folds in results.items()
    }
    create_markdown_artifact(
        key="backtest", markdown=report_markdown(results), description="cellpulse backtest"
    )
    return BacktestResult(results, runs)
