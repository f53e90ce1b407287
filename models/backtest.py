"""Rolling-origin backtest: several folds, each trained on the past and tested on the next
period, so a model's quality is a mean and a spread rather than one hold-out's luck."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import polars as pl

from cellpulse.errors import NoDataError
from cellpulse.models import training
from cellpulse.models.boosting import train_local
from cellpulse.models.params import ModelParams
from cellpulse.models.training import TrainingData

if TYPE_CHECKING:
    from cellpulse.models.family import ModelFamily


MIN_TRAIN_DAYS = 3  # the fewest days of features the oldest fold trains on


@dataclass(frozen=True)
class Fold:
    index: int
    train: tuple[date, date]
    test: tuple[date, date]
    metrics: dict[str, float] = field(default_factory=dict)  # model and baseline metrics
    skipped: str | None = None  # why this fold could not train (e.g. no congestion yet)
    params: dict[str, Any] = field(default_factory=dict)  # every parameter the fold used
    primary: str = ""  # the metric promotion judges this family on


def fold_ends(days: list[date], folds: int, holdout_days: int, min_train_days: int) -> list[date]:
    """The last day of each fold's data, oldest fold first: the newest fold ends at the last
    day, each earlier one `holdout_days` before, so the test periods tile the newest days."""
    if folds < 1:
        raise NoDataError("a backtest needs at least one fold")
    needed = min_train_days + folds * holdout_days
    if len(days) < needed:
        raise NoDataError(
            f"{folds} folds of {holdout_days} test days after {min_train_days} training days "
            f"need {needed} days of features; found {len(days)}: ingest more or use fewer folds"
        )
    return [days[len(days) - 1 - i * holdout_days] for i in reversed(range(folds))]


def up_to(features: pl.DataFrame, end: date) -> pl.DataFrame:
    return features.filter(pl.col("ts").dt.date() <= end)


def summarise(folds: list[Fold]) -> dict[str, tuple[float, float, int]]:
    """metric -> (mean, standard deviation, folds) over the folds that have it."""
    values: dict[str, list[float]] = {}
    for fold in folds:
        for name, value in fold.metrics.items():
            if not math.isnan(value):
                values.setdefault(name, []).append(value)
    return {
        name: (statistics.fmean(v), statistics.pstdev(v) if len(v) > 1 else 0.0, len(v))
        for name, v in sorted(values.items())
    }


def fit_fold(
    family: ModelFamily,
    index: int,
    data: TrainingData,
    params: ModelParams,
    spec_hash: str,
) -> Fold:
    """Fold `index` of `family`: trained on `data` but its newest `train.holdout_days`, and
    judged on those. A fold that cannot train (e.g. no congestion yet) is kept, saying why."""
    split = training.split_by_time(data.features, params.train.holdout_days)
    try:
        candidate = family.fit(data, params, spec_hash, train_local)
    except NoDataError as exc:
        return Fold(index, split.train_days, split.holdout_days, skipped=str(exc))
    return Fold(
        index,
        split.train_days,
        split.holdout_days,
        candidate.metrics | candidate.baselines,
        params=candidate.params,
        primary=candidate.rule.primary,
    )


def per_fold(folds: list[Fold]) -> tuple[dict[str, list[float]], str]:
    """The primary metric per fold, for the model and each baseline measured the same way
    (a baseline's metric ends like the primary, `val_pr_auc` ~ `zscore_pr_auc`), NaN where
    a fold lacks it; and the metric's name. Empty when no fold trained."""
    primary = next((f.primary for f in folds if f.primary), "")
    if not primary:
        return {}, ""
    key = primary.removeprefix("val_")
    names = sorted({n for f in folds for n in f.metrics if n != primary and n.endswith(key)})
    series = {"model": [f.metrics.get(primary, math.nan) for f in folds]}
    for name in names:
        series[name.removesuffix(key).rstrip("_")] = [f.metrics.get(name, math.nan) for f in folds]
    return series, primary


def markdown(folds: dict[str, list[Fold]]) -> str:
    """Each family's metrics over the folds (mean, spread) as Markdown, and skipped folds."""
    lines = ["# cellpulse backtest", ""]
    for family, family_folds in folds.items():
        lines += [f"## {family}", "", "| metric | mean | std | folds |", "|---|---:|---:|---:|"]
        for name, (mean, sd, n) in summarise(family_folds).items():
            lines.append(f"| {name} | {mean:.4f} | {sd:.4f} | {n} |")
        skipped = [f"fold {f.index}: {f.skipped}" for f in family_folds if f.skipped]
        lines += ["", *skipped, ""]
    return "\n".join(lines)
