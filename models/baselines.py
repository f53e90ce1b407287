"""Baseline anomaly detectors the models are measured against, with the same alert rule:
each returns `cell_id, ts, anomaly_score, is_anomaly` for the rows it judges, sorted by
(cell_id, ts), the shape `models.evaluation.detection_metrics` reads."""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.ensemble import IsolationForest

from cellpulse.models.anomaly import TARGETS, Z_CAP, TargetKpi, alert_flags, bad_deviation
from cellpulse.models.boosting import matrix
from cellpulse.models.congestion import feature_columns
from cellpulse.models.params import ModelParams

IFOREST_FIT_ROWS = 100_000
ZSCORE_THRESHOLD = 3.0  # the z-score detector alerts from three standard deviations on


def isolation_forest(
    train: pl.DataFrame, test: pl.DataFrame, params: ModelParams, quantile: float = 0.995
) -> pl.DataFrame:
    """The O-RAN SC anomaly-detection xApp's method: an IsolationForest over the same feature
    rows. Score = how easily a row is isolated (higher = more anomalous); alert threshold =
    the `quantile` of the training scores, then the usual consecutive-ROP rule.

    Returns cell_id, ts, anomaly_score, is_anomaly for `test`, sorted by (cell_id, ts)."""
    columns = feature_columns(train.columns)
    fit_rows = train.sample(min(train.height, IFOREST_FIT_ROWS), seed=params.train.seed)
    x_fit = matrix(fit_rows, columns)
    # IsolationForest takes no NaN: a missing value becomes the column's training median.
    medians = fit_rows.select(pl.col(c).cast(pl.Float64).median() for c in columns)
    fill = np.nan_to_num(medians.to_numpy()[0].astype(float))
    forest = IsolationForest(n_estimators=100, random_state=params.train.seed, n_jobs=1)
    forest.fit(np.where(np.isnan(x_fit), fill, x_fit))
    threshold = float(
        np.quantile(-forest.score_samples(np.where(np.isnan(x_fit), fill, x_fit)), quantile)
    )
    test = test.sort("cell_id", "ts")
    x = matrix(test, columns)
    scored = test.select("cell_id", "ts").with_columns(
        pl.Series("anomaly_score", -forest.score_samples(np.where(np.isnan(x), fill, x)))
    )
    flags = alert_flags(scored, threshold, params.alerts.consecutive_rops, params.rop_minutes)
    return scored.with_columns(flags)


def _zscores(
    train: pl.DataFrame,
    test: pl.DataFrame,
    targets: tuple[TargetKpi, ...],
    by_hour: bool = False,
) -> pl.DataFrame:
    """Per test row, one bad-direction z-score column per KPI of `targets` that `train`
    holds (named after the KPI), against the cell's own training mean and spread, or with
    `by_hour` against those of the cell at that hour of the day."""
    present = [t for t in targets if t.name in train.columns and t.name in test.columns]
    keys = ["cell_id"]
    if by_hour:
        # UTC hours: a cell's local hour is a fixed shift of them, so each (cell, hour)
        # group is the same set of ROPs either way.
        hour = pl.col("ts").dt.hour().alias("_hour")
        train, test, keys = train.with_columns(hour), test.with_columns(hour), ["cell_id", "_hour"]
    stats = train.group_by(keys).agg(
        [pl.col(t.name).mean().alias(f"{t.name}__m") for t in present]
        + [pl.col(t.name).std().alias(f"{t.name}__s") for t in present]
    )
    joined = (
        test.select(*keys, *[t.name for t in present])
        .with_row_index("_row")
        .join(stats, on=keys, how="left")
        .sort("_row")
    )
    zs = []
    for t in present:
        z = (pl.col(t.name) - pl.col(f"{t.name}__m")) / pl.max_horizontal(
            pl.col(f"{t.name}__s"), pl.lit(t.min_scale)
        )
        z = bad_deviation(z, t.direction)
        zs.append(z.clip(0, Z_CAP).fill_null(0.0).fill_nan(0.0).alias(t.name))
    return joined.select(zs) if zs else pl.DataFrame({"_none": [0.0] * test.height})


def zscore_baseline(
    train: pl.DataFrame, test: pl.DataFrame, targets: tuple[TargetKpi, ...] = TARGETS
) -> pl.Series:
    """The per-cell z-score detector of the O-RAN SC AD xApp family: each KPI against the
    cell's own training mean and standard deviation, worst bad-direction z taken."""
    zs = _zscores(train, test, targets)
    return zs.select(pl.max_horizontal(pl.all()).alias("zscore_baseline")).to_series()


def hour_zscore_baseline(
    train: pl.DataFrame, test: pl.DataFrame, targets: tuple[TargetKpi, ...] = TARGETS
) -> pl.Series:
    """The per-cell hour-of-day z-score: each KPI against the cell's own training mean and
    standard deviation at that hour of the day (a busy hour is judged against busy hours),
    worst bad-direction z taken."""
    zs = _zscores(train, test, targets, by_hour=True)
    return zs.select(pl.max_horizontal(pl.all()).alias("hour_zscore_baseline")).to_series()


def zscore_kpis(
    train: pl.DataFrame,
    test: pl.DataFrame,
    threshold: float,
    targets: tuple[TargetKpi, ...] = TARGETS,
) -> pl.Series:
    """Per test row, the KPIs whose per-cell z-score reaches `threshold`, worst first: what
    drives the z-score detector's score, as `anomaly_kpis` names it."""
    zs = _zscores(train, test, targets).drop("_none", strict=False)
    if not zs.width:
        return pl.Series("anomaly_kpis", [[]] * test.height, dtype=pl.List(pl.String()))
    names = zs.columns
    rows = zs.to_numpy()
    out: list[list[str]] = [[] for _ in range(rows.shape[0])]
    # Only rows above the threshold name a KPI: few, so a loop over them stays cheap.
    for i in np.flatnonzero((rows >= threshold).any(axis=1)):
        order = np.argsort(-rows[i], kind="stable")
        out[i] = [names[j] for j in order if rows[i, j] >= threshold]
    return pl.Series("anomaly_kpis", out, dtype=pl.List(pl.String()))


def zscore_detector(
    train: pl.DataFrame, test: pl.DataFrame, params: ModelParams, by_hour: bool = False
) -> pl.DataFrame:
    """The per-cell z-score baseline (`zscore_baseline`, or with `by_hour` the hour-of-day
    one, `hour_zscore_baseline`; learned on `train`) on the rows of `test`, with the usual
    consecutive-ROP alert rule from ZSCORE_THRESHOLD on. Works on feature rows and KPI rows
    alike (it reads the watched KPIs' own columns)."""
    test = test.sort("cell_id", "ts")
    baseline = hour_zscore_baseline if by_hour else zscore_baseline
    scored = test.select("cell_id", "ts").with_columns(baseline(train, test).alias("anomaly_score"))
    flags = alert_flags(
        scored, ZSCORE_THRESHOLD, params.alerts.consecutive_rops, params.rop_minutes
    )
    return scored.with_columns(flags)
