"""Congestion model: P(cell congested within the horizon), a LightGBM classifier on features.
The horizon is the next `horizon_minutes`, or the cell's busy hour of the next local day."""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import polars as pl

from cellpulse.features.builder import KEY_COLUMNS
from cellpulse.models.boosting import (
    BoosterParams,
    Predict,
    Trainer,
    lightgbm_predict,
    matrix,
    top_gain,
    train_local,
    training_frame,
)


@dataclass(frozen=True)
class CongestionParams(BoosterParams):
    def classifier_params(self) -> dict[str, object]:
        return self.lgb_params("binary")


def feature_columns(columns: list[str]) -> list[str]:
    return [c for c in columns if c not in KEY_COLUMNS]


@dataclass
class CongestionModel:
    """The fitted classifier, its horizon, the spec it was trained on and its calibration."""

    feature_names: list[str]
    booster: lgb.Booster
    horizon_minutes: int
    spec_hash: str
    params: CongestionParams = field(default_factory=CongestionParams)
    # Isotonic map from the booster's raw probability to a calibrated one, as (x, y) knots;
    # None: the raw probability is used as it is.
    calibration: tuple[list[float], list[float]] | None = None
    horizon_kind: str = "minutes"  # or "next_day_busy_hour" (CongestionRule.horizon)

    @classmethod
    def fit(
        cls,
        features: pl.DataFrame,
        target: pl.Series,
        horizon_minutes: int,
        spec_hash: str,
        params: CongestionParams,
        trainer: Trainer = train_local,
        horizon_kind: str = "minutes",
    ) -> CongestionModel:
        """Fit on rows whose target is known (not null)."""
        known = target.is_not_null()
        names = feature_columns(features.columns)
        # The model's columns before the rows: filtering the whole frame would copy columns
        # the model never reads.
        x = training_frame(features.select(names).filter(known), names)
        y = target.filter(known).cast(pl.Int8).to_numpy()
        booster = trainer(params.classifier_params(), x, y, params.num_trees, names)
        return cls(names, booster, horizon_minutes, spec_hash, params, None, horizon_kind)

    def predict_raw(
        self, features: pl.DataFrame, predict: Predict = lightgbm_predict
    ) -> np.ndarray:
        """The booster's probability before calibration."""
        return predict(self.booster, matrix(features, self.feature_names))

    def predict(self, features: pl.DataFrame, predict: Predict = lightgbm_predict) -> np.ndarray:
        """P(congested within the horizon), calibrated where a calibration was fitted.

        Args:
            predict: how the booster scores the matrix (LightGBM's own, or compiled).
        """
        raw = self.predict_raw(features, predict)
        knots = getattr(self, "calibration", None)  # models pickled before calibration existed
        return raw if knots is None else np.interp(raw, knots[0], knots[1])

    def calibrate(self, features: pl.DataFrame, target: pl.Series, min_positives: int = 5) -> bool:
        """Fit the isotonic calibration on a slice of data later than the training data.
        Returns whether it was fitted (a slice with too few congested rows is not enough)."""
        from sklearn.isotonic import IsotonicRegression

        known = target.is_not_null()
        y = target.filter(known).cast(pl.Int8).to_numpy()
        if int(y.sum()) < min_positives or int((1 - y).sum()) < min_positives:
            return False
        raw = self.predict_raw(features.filter(known))
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
        self.calibration = (
            [float(v) for v in iso.X_thresholds_],
            [float(v) for v in iso.y_thresholds_],
        )
        return True

    def importance(self, top: int = 20) -> list[tuple[str, float]]:
        return top_gain(self.booster, self.feature_names, top)

    @property
    def horizon_phrase(self) -> str:
        """The forecast in words, for plot titles."""
        if self.horizon == "busy hour D+1":
            return "in the next day's busy hour"
        return f"within {self.horizon}"

    @property
    def horizon(self) -> str:
        """How the score table names the horizon: `1h`, `15m`, or `busy hour D+1`."""
        return horizon_label(getattr(self, "horizon_kind", "minutes"), self.horizon_minutes)


def horizon_label(kind: str, minutes: int) -> str:
    """A horizon as the score table names it: `1h`, `15m`, or `busy hour D+1`."""
    if kind == "next_day_busy_hour":
        return "busy hour D+1"
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"
