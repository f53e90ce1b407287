"""Hyperparameter search: small, time-boxed, random. No MLflow here (tracking_runs.log_trials
records the trials as nested runs).

Trial 0 is always the configured settings, so tuning can only find something at least as
good on the hold-out; the others draw LightGBM parameters from SEARCH_SPACE with a seeded
generator (same seed, same trials). The search stops after `trials` or once the time
budget is spent, whichever comes first; a started trial always finishes.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cellpulse import progress
from cellpulse.models.training import Candidate
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
    candidate: Candidate
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
    """The trial with the best primary metric on the hold-out (NaN counts as worst; ties go
    to the earlier trial, so the configured settings win a tie)."""
    rule = trials[0].candidate.rule
    sign = 1.0 if rule.better(rule.primary) else -1.0

    def key(t: Trial) -> tuple[float, int]:
        value = t.primary
        return (-math.inf if math.isnan(value) else sign * value, -t.number)

    return max(trials, key=key)


def describe(chosen: Trial, trials: list[Trial], run_id: str) -> str:
    """One line for people: which trial won the search, on what, with which parameters, and
    the MLflow run holding every trial."""
    params = ", ".join(f"{k}={v}" for k, v in chosen.params.items())
    return (
        f"trial {chosen.number} of {len(trials)} won ({chosen.candidate.rule.primary} "
        f"{chosen.primary:.4f}; {params}); trials in MLflow run {run_id}"
    )
