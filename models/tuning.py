"""Hyperparameter search: small, time-boxed, random. No MLflow here (tracking_runs.tuning_runs
records the trials as nested runs).

Trials are compared on a validation window of their own, never on the hold-out the promotion
gate judges by: a parameter set picked for its hold-out score would look better there than it
is, and the gate would pass it on that flattering figure. `tune` hands each trial only the
days before the hold-out (the family's own split then carves the newest `holdout_days` of
them as the trial's validation window), picks the best trial there, and refits its
parameters on every day so the gate judges the chosen model on the untouched hold-out.

Trial 0 is always the configured settings, so tuning can only find something at least as
good on the validation window; the others draw LightGBM parameters from SEARCH_SPACE with a
seeded generator (same seed, same trials). The search stops after `trials` or once the time
budget is spent, whichever comes first; a started trial always finishes.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from cellpulse import progress
from cellpulse.errors import NoDataError
from cellpulse.models.training import Candidate, TrainingData, split_by_time
from cellpulse.settings import TrainSettings

SEARCH_SPACE: dict[str, tuple[Any, ...]] = {
    "num_leaves": (15, 31, 63, 127),
    "learning_rate": (0.03, 0.05, 0.1, 0.2),
    "min_data_in_leaf": (20, 50, 100, 200),
    "num_trees": (50, 100, 200, 400),
}


@dataclass(frozen=True)
class Trial:
    number: int
    params: dict[str, Any]  # the searched parameters of this trial
    candidate: Candidate  # fitted without the hold-out; its metrics are on its validation days
    seconds: float

    @property
    def primary(self) -> float:
        return self.candidate.metrics.get(self.candidate.rule.primary, math.nan)


def draw(rng: random.Random, space: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
    return {name: rng.choice(values) for name, values in space.items()}


def search(
    fit: Callable[[TrainSettings], Candidate],
    base: TrainSettings,
    trials: int,
    budget_s: float,
    seed: int,
    space: dict[str, tuple[Any, ...]] = SEARCH_SPACE,
    clock: Callable[[], float] = time.monotonic,
    description: str = "tuning: trials",
) -> list[Trial]:
    """Fit up to `trials` candidates (trial 0: `base`), stopping when `budget_s` is spent;
    each trial is a step of the progress shown as `description`."""
    if trials < 1:
        raise ValueError("tuning needs at least one trial")
    rng = random.Random(seed)
    seen: list[dict[str, Any]] = []
    done: list[Trial] = []
    started = clock()
    for number in progress.track(range(trials), description, total=trials):
        if number and clock() - started >= budget_s:
            break
        params = {k: getattr(base, k) for k in space} if number == 0 else draw(rng, space)
        for _ in range(20):  # avoid refitting a combination already tried
            if params not in seen:
                break
            params = draw(rng, space)
        seen.append(params)
        t0 = clock()
        candidate = fit(base.model_copy(update=params))
        done.append(Trial(number, params, candidate, clock() - t0))
    return done


def best(trials: list[Trial]) -> Trial:
    """The trial with the best primary metric on its validation window, the rule's secondary
    metric breaking ties as the promotion gate breaks them (NaN counts as worst; remaining
    ties go to the earlier trial, so the configured settings win a tie)."""
    rule = trials[0].candidate.rule

    def signed(t: Trial, metric: str | None) -> float:
        value = math.nan if metric is None else t.candidate.metrics.get(metric, math.nan)
        if math.isnan(value):
            return -math.inf
        return value if rule.better(metric or "") else -value

    def key(t: Trial) -> tuple[float, float, int]:
        return (signed(t, rule.primary), signed(t, rule.secondary), -t.number)

    return max(trials, key=key)


def selection_data(data: TrainingData, holdout_days: int) -> TrainingData:
    """What trials may see: `data` before the hold-out days (features, the KPIs their
    targets come from, labelled events that start before it). A target that would need a
    KPI of the hold-out is unknown to the trials and left out of their validation metrics.

    NoDataError when too few days remain to carve a validation window from the training
    days."""
    days = data.features["ts"].dt.date().unique().sort().to_list()
    if len(days) <= 2 * holdout_days:
        raise NoDataError(
            f"tuning needs more than {2 * holdout_days} days of features (found {len(days)}): "
            f"the hold-out's {holdout_days} and a validation window as long before it; "
            "ingest more days, lower train.holdout_days or train without --tune"
        )
    cut = split_by_time(data.features, holdout_days).holdout["ts"].min()
    events = data.events
    if events is not None:
        events = events.filter(pl.col("start") < cut)
    return TrainingData(
        data.features.filter(pl.col("ts") < cut), data.kpis.filter(pl.col("ts") < cut), events
    )


@dataclass(frozen=True)
class Tuned:
    """A search's trials, the one chosen on its validation window, and the candidate refitted
    with its parameters on every training day and judged on the hold-out."""

    trials: list[Trial]
    chosen: Trial
    candidate: Candidate


def tune(
    fit: Callable[[TrainSettings, TrainingData], Candidate],
    data: TrainingData,
    base: TrainSettings,
    trials: int,
    budget_s: float,
    seed: int,
    space: dict[str, tuple[Any, ...]] = SEARCH_SPACE,
    clock: Callable[[], float] = time.monotonic,
    description: str = "tuning: trials",
    refit: Callable[[TrainSettings, TrainingData], Candidate] | None = None,
) -> Tuned:
    """Search on the days before the hold-out (`selection_data`), choose by the validation
    window, then refit the chosen parameters on all of `data`: the refit is the candidate
    the promotion gate judges, on a hold-out no trial has seen. `refit` fits that last
    candidate (default `fit`: trials may be wrapped, e.g. each in its own MLflow run)."""
    selection = selection_data(data, base.holdout_days)
    done = search(
        lambda s: fit(s, selection), base, trials, budget_s, seed, space, clock, description
    )
    chosen = best(done)
    final = (refit or fit)(base.model_copy(update=chosen.params), data)
    return Tuned(done, chosen, final)


def describe(chosen: Trial, trials: list[Trial], run_id: str) -> str:
    """One line for people: which trial won the search, on which days, by what, with which
    parameters, and the MLflow run holding every trial."""
    params = ", ".join(f"{k}={v}" for k, v in chosen.params.items())
    first, last = chosen.candidate.split.holdout_days
    return (
        f"trial {chosen.number} of {len(trials)} won on the validation days {first}..{last} "
        f"({chosen.candidate.rule.primary} {chosen.primary:.4f}; {params}); "
        f"trials in MLflow run {run_id}"
    )
