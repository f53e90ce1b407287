"""Supervised fault model: where labelled faults exist (the simulator's ground truth or an
operator's labels file), a LightGBM classifier learns P(this ROP is inside a fault) from the
features and the normal-behaviour model's per-KPI deviations (stacked: the classifier sees
how far each KPI is from its expectation, and the context that says whether that matters).

Its probability joins the unsupervised score in the score's own units: p = 0.5 sits exactly
on the alert threshold, so `blend` (the stronger of the two: either model alone can raise an
alert, the classifier for fault types it has seen, the residuals for the ones it has not) and
`replace` (the probability alone) keep every threshold, alert rule and ranking downstream
unchanged. The KPIs driving a supervised alert come from LightGBM's own per-feature
contributions (`pred_contrib`), summed per KPI.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import polars as pl

from cellpulse.features.builder import KEY_COLUMNS
from cellpulse.features.spec import CALENDAR_COLUMNS
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

Z_PREFIX = "dev_"  # the stacked per-KPI deviations: dev_<kpi>
DECISION = 0.5  # the probability that maps onto the unsupervised alert threshold
DRIVERS = 3
NOT_KPIS = frozenset(CALENDAR_COLUMNS)


def classifier_inputs(features: pl.DataFrame, deviations: pl.DataFrame) -> pl.DataFrame:
    """The classifier's columns: every feature but the keys, and `dev_<kpi>` per deviation."""
    own = features.select(c for c in features.columns if c not in KEY_COLUMNS)
    return pl.concat([own, deviations.select(pl.all().name.prefix(Z_PREFIX))], how="horizontal")


def kpi_of(columns: list[str]) -> dict[str, str]:
    """Which KPI each input column describes (`prb_util_dl_pct_mean_24h` -> `prb_util_dl_pct`,
    `dev_drop_rate_pct` -> `drop_rate_pct`); calendar columns describe none and are left out.
    A column's KPI is the longest other column name it extends by `_<transform>`."""
    names = set(columns)
    out: dict[str, str] = {}
    for column in columns:
        if column.startswith(Z_PREFIX):
            out[column] = column.removeprefix(Z_PREFIX)
            continue
        if column in NOT_KPIS:
            continue
        parts = column.split("_")
        base = column
        for cut in range(1, len(parts)):
            prefix = "_".join(parts[:cut])
            if prefix in names and prefix not in NOT_KPIS:
                base = prefix  # keep the longest match: the loop runs from short to long
        out[column] = base
    return out


@dataclass
class FaultClassifier:
    """P(fault) per ROP, and the KPIs that push it up."""

    feature_names: list[str]
    booster: lgb.Booster
    kpis: dict[str, str]
    events: int  # labelled fault events it learned from
    positive_rows: int

    @classmethod
    def fit(
        cls,
        inputs: pl.DataFrame,
        in_fault: pl.Series,
        events: int,
        params: BoosterParams,
        trainer: Trainer = train_local,
    ) -> FaultClassifier:
        """Learn P(fault) from `inputs` (`classifier_inputs`) where `in_fault` marks the
        rows inside labelled faults; `events` is how many faults those are (recorded)."""
        names = list(inputs.columns)
        y = in_fault.cast(pl.Int8).to_numpy()
        booster = trainer(
            params.lgb_params("binary"), training_frame(inputs, names), y, params.num_trees, names
        )
        return cls(names, booster, kpi_of(names), events, int(y.sum()))

    def probability(self, inputs: pl.DataFrame, predict: Predict = lightgbm_predict) -> np.ndarray:
        """P(fault) per row of `inputs` (see `classifier_inputs`)."""
        return predict(self.booster, matrix(inputs, self.feature_names))

    def importance(self, top: int = 20) -> list[tuple[str, float]]:
        return top_gain(self.booster, self.feature_names, top)

    def drivers(self, inputs: pl.DataFrame) -> list[list[str]]:
        """Per row, up to DRIVERS KPIs whose summed contributions raise P(fault), largest
        first. SHAP-style contributions cost far more than a prediction: call this on the
        rows that need an explanation, not on a whole day."""
        if inputs.is_empty():
            return []
        contrib = self.booster.predict(matrix(inputs, self.feature_names), pred_contrib=True)
        kpis = sorted(set(self.kpis.values()))
        column_of = {k: i for i, k in enumerate(kpis)}
        to_kpi = np.zeros((len(self.feature_names), len(kpis)))
        for j, name in enumerate(self.feature_names):
            if name in self.kpis:
                to_kpi[j, column_of[self.kpis[name]]] = 1.0
        per_kpi = np.asarray(contrib)[:, : len(self.feature_names)] @ to_kpi
        order = np.argsort(-per_kpi, axis=1)[:, :DRIVERS]
        return [
            [kpis[k] for k in row_order if per_kpi[i, k] > 0] for i, row_order in enumerate(order)
        ]


def as_score(probability: np.ndarray, threshold: float) -> np.ndarray:
    """P(fault) in the anomaly score's units: DECISION maps onto the alert threshold."""
    return threshold * probability / DECISION
