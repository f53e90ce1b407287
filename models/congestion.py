"""Congestion model: P(cell congested within the horizon), a LightGBM classifier on features."""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import polars as pl

from cellpulse.features.builder import KEY_COLUMNS
from cellpulse.models.boosting import BoosterParams, Trainer, matrix, train_local


@dataclass(frozen=True)
class CongestionParams(BoosterParams):
    def classifier_params(self) -> dict[str, object]:
        return self.lgb_params("binary")


def feature_columns(columns: list[str]) -> list[str]:
    return [c for c in columns if c not in KEY_COLUMNS]


@dataclass
class CongestionModel:
    feature_names: list[str]
    booster: lgb.Booster
    horizon_minutes: int
    spec_hash: str
    params: CongestionParams = field(default_factory=CongestionParams)

    @classmethod
    def fit(
        cls,
        features: pl.DataFrame,
        target: pl.Series,
        horizon_minutes: int,
        spec_hash: str,
        params: CongestionParams,
        trainer: Trainer = train_local,
    ) -> CongestionModel:
        """Fit on rows whose target is known (not null)."""
        known = target.is_not_null()
        names = feature_columns(features.columns)
        x = matrix(features.filter(known), names)
        y = target.filter(known).cast(pl.Int8).to_numpy()
        booster = trainer(params.classifier_params(), x, y, params.num_trees, names)
        return cls(names, booster, horizon_minutes, spec_hash, params)

    def predict(self, features: pl.DataFrame) -> np.ndarray:
        return np.asarray(self.booster.predict(matrix(features, self.feature_names)))

    def importance(self, top: int = 20) -> list[tuple[str, float]]:
        gain = self.booster.feature_importance("gain")
        order = np.argsort(-gain)[:top]
        return [(self.feature_names[i], float(gain[i])) for i in order]

    @property
    def horizon(self) -> str:
        h = self.horizon_minutes
        return f"{h // 60}h" if h % 60 == 0 else f"{h}m"
