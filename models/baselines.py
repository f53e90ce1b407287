"""Baseline anomaly detectors the models are measured against, with the same alert rule."""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.ensemble import IsolationForest

from cellpulse.models.anomaly import alert_flags
from cellpulse.models.boosting import matrix
from cellpulse.models.congestion import feature_columns
from cellpulse.settings import Settings

IFOREST_FIT_ROWS = 100_000


def isolation_forest(
    train: pl.DataFrame, test: pl.DataFrame, settings: Settings, quantile: float = 0.995
) -> pl.DataFrame:
    """The O-RAN SC anomaly-detection xApp's method: an IsolationForest over the same feature
    rows. Score = how easily a row is isolated (higher = more anomalous); alert threshold =
    the `quantile` of the training scores, then the usual consecutive-ROP rule.

    Returns cell_id, ts, anomaly_score, is_anomaly for `test`, sorted by (cell_id, ts)."""
    columns = feature_columns(train.columns)
    fit_rows = train.sample(min(train.height, IFOREST_FIT_ROWS), seed=settings.train.seed)
    x_fit = matrix(fit_rows, columns)
    # IsolationForest takes no NaN: a missing value becomes the column's training median.
    medians = fit_rows.select(pl.col(c).cast(pl.Float64).median() for c in columns)
    fill = np.nan_to_num(medians.to_numpy()[0].astype(float))
    forest = IsolationForest(n_estimators=100, random_state=settings.train.seed, n_jobs=1)
    forest.fit(np.where(np.isnan(x_fit), fill, x_fit))
    threshold = float(
        np.quantile(-forest.score_samples(np.where(np.isnan(x_fit), fill, x_fit)), quantile)
    )
    test = test.sort("cell_id", "ts")
    x = matrix(test, columns)
    scored = test.select("cell_id", "ts").with_columns(
        pl.Series("anomaly_score", -forest.score_samples(np.where(np.isnan(x), fill, x)))
    )
    flags = alert_flags(scored, threshold, settings.alerts.consecutive_rops, settings.rop_minutes)
    return scored.with_columns(flags)
