"""What training shares across model families: the time-ordered split and the candidate a
family's `fit` returns. No MLflow here: the tracking edge logs and registers a candidate;
each family's fitting and judging lives in its own module (cellpulse.models.families)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

import polars as pl

from cellpulse.errors import NoDataError
from cellpulse.models.profile import HourProfile
from cellpulse.models.promotion import PromotionRule
from cellpulse.window import DayWindow

TRAIN_WINDOW_TAG = "data.train_window"  # the days a model was fitted on, as `str(DayWindow)`


@dataclass(frozen=True)
class Split:
    """Feature rows cut by time: the older days to fit on, the newest to judge on."""

    train: pl.DataFrame
    holdout: pl.DataFrame
    train_days: tuple[date, date]
    holdout_days: tuple[date, date]

    def tags(self) -> dict[str, str]:
        return {
            TRAIN_WINDOW_TAG: str(DayWindow(*self.train_days)),
            "data.holdout_window": str(DayWindow(*self.holdout_days)),
        }


@dataclass(frozen=True)
class TrainingData:
    """What a family may learn from: feature rows, the KPIs they were built from (targets
    that need the KPIs after a row, like congestion), labelled events (None: none), and
    every cell's hour-of-day profile of the fitting days where `features` are a sample of
    the network's cells (None: learned from `features`)."""

    features: pl.DataFrame
    kpis: pl.DataFrame
    events: pl.DataFrame | None = None
    profile: HourProfile | None = None


@dataclass
class Candidate:
    """A fitted model with everything the tracking edge logs and the promotion gate reads:
    its hold-out metrics and its baselines' on the same rows, the rule that judges it, the
    split and the figures."""

    family: str
    model: Any
    params: dict[str, Any]
    metrics: dict[str, float]
    baselines: dict[str, float]
    rule: PromotionRule
    split: Split
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG
    holdout_rows: int = 0
    # What the model covers of the KPIs, one line for the training summary: the KPIs the
    # anomaly model watches and those it left out; the congestion rule as applied.
    coverage: str = ""

    def baseline_reference(self) -> dict[str, float]:
        """What the first model must beat: the best baseline on the primary metric."""
        key = self.rule.primary.removeprefix("val_")
        values = [v for k, v in self.baselines.items() if k.endswith(key) and not math.isnan(v)]
        if not values:
            return {}
        best = max(values) if self.rule.better(self.rule.primary) else min(values)
        return {self.rule.primary: best}


def split_by_time(features: pl.DataFrame, holdout_days: int) -> Split:
    """Newest `holdout_days` days for evaluation, everything before for fitting."""
    days = features["ts"].dt.date().unique().sort().to_list()
    if len(days) < holdout_days + 1:
        raise NoDataError(
            f"training needs more than {holdout_days} days of features (found {len(days)}); "
            "ingest more days or lower train.holdout_days"
        )
    first_holdout = days[-holdout_days]
    cut = datetime.combine(first_holdout, time(), tzinfo=UTC)
    return Split(
        features.filter(pl.col("ts") < cut),
        features.filter(pl.col("ts") >= cut),
        (days[0], days[-holdout_days - 1]),
        (first_holdout, days[-1]),
    )


def sample_rows(df: pl.DataFrame, max_rows: int, seed: int) -> pl.DataFrame:
    """At most `max_rows` rows, drawn with `seed`, back in (cell_id, ts) order."""
    return df if df.height <= max_rows else df.sample(max_rows, seed=seed).sort("cell_id", "ts")
