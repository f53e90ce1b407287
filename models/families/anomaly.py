"""The anomaly family: normal-behaviour regressors (cellpulse.models.anomaly) fitted,
judged against the per-cell z-score and IsolationForest detectors, scored into
`anomaly_score`, `is_anomaly` and `anomaly_kpis`; before a model has earned the champion
alias, the per-cell z-score scores in its place."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from cellpulse.errors import NoDataError
from cellpulse.features import targets
from cellpulse.features.targets import event_labels
from cellpulse.lake import by_keys
from cellpulse.models import evaluation, plots, training
from cellpulse.models.anomaly import TARGETS, AnomalyModel, AnomalyParams, alert_flags
from cellpulse.models.baselines import (
    ZSCORE_THRESHOLD,
    isolation_forest,
    zscore_detector,
    zscore_kpis,
)
from cellpulse.models.boosting import Predict, Trainer, lightgbm_predict, top_gain, train_local
from cellpulse.models.evaluation import fault_events
from cellpulse.models.params import ModelParams
from cellpulse.models.profile import HourProfile
from cellpulse.models.promotion import PromotionRule
from cellpulse.models.training import Candidate, TrainingData
from cellpulse.settings import AlertSettings, TrainSettings

NAME = "anomaly"
TOP_K = 20


def anomaly_params(train: TrainSettings, alerts: AlertSettings | None = None) -> AnomalyParams:
    """The anomaly model's parameters: boosting and coverage from `train`, the alert
    threshold's false-alarm budget and run length from `alerts` (default settings if None)."""
    alerts = alerts if alerts is not None else AlertSettings()
    return replace(
        AnomalyParams.from_settings(train),
        min_kpi_coverage=train.min_kpi_coverage,
        false_alarms_per_100_cell_days=alerts.false_alarms_per_100_cell_days,
        consecutive_rops=alerts.consecutive_rops,
    )


def score_anomaly(
    model: AnomalyModel,
    features: pl.DataFrame,
    params: ModelParams,
    predict: Predict = lightgbm_predict,
) -> pl.DataFrame:
    """cell_id, ts, anomaly_score, anomaly_kpis, is_anomaly; rows sorted by (cell_id, ts).

    Args:
        predict: how the model's boosters score (LightGBM's own, or compiled).
    """
    feats = by_keys(features)
    scores = model.components(feats, predict)
    keys = feats.select("cell_id", "ts")
    flags = alert_flags(
        pl.concat([keys, scores.frame], how="horizontal"),
        model.threshold,
        params.alerts.consecutive_rops,
        params.rop_minutes,
    )
    # The classifier explains the alerts it raises (its contributions are costly: alerting
    # rows only, not every row above the threshold).
    led = scores.classifier_led
    explained = model.explain(scores, keys, None if led is None else led & flags.to_numpy())
    return pl.concat([keys, explained], how="horizontal").with_columns(flags)


def fit_supervised(
    model: AnomalyModel,
    train: pl.DataFrame,
    in_fault: pl.Series | None,
    faults: pl.DataFrame | None,
    params: ModelParams,
    trainer: Trainer,
) -> str:
    """Supervised mode: fit the fault classifier where the training window holds enough
    labelled faults. Returns what was done, for the run's params."""
    mode = params.train.supervised
    if mode == "off":
        return "off"
    if in_fault is None or faults is None:
        return "off (no labels)"
    window = train.select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi")).row(0)
    cells = train["cell_id"].unique()
    events = faults.filter(
        pl.col("cell_id").is_in(cells.implode())
        & (pl.col("end") > window[0])
        & (pl.col("start") <= window[1])
    ).height
    if events < params.train.supervised_min_events:
        return (
            f"off ({events} labelled fault events in the training window, "
            f"{params.train.supervised_min_events} needed)"
        )
    model.fit_classifier(train, in_fault, events, mode, trainer)
    return f"{mode} ({events} labelled fault events)"


def evaluate_anomaly(
    model: AnomalyModel, holdout: pl.DataFrame, events: pl.DataFrame | None, params: ModelParams
) -> tuple[dict[str, float], pl.DataFrame]:
    """Hold-out metrics of an anomaly model. With labelled events: ranking and alerting
    quality; always: how much closer to the truth than a seasonal-naive guess it predicts."""
    scored = score_anomaly(model, holdout, params)
    holdout = holdout.sort("cell_id", "ts")
    metrics: dict[str, float] = {"val_mae_ratio": _mae_ratio(model, holdout)}
    faults = fault_events(events)
    if events is not None and faults is not None:
        metrics |= detection_metrics("val", scored, events, params)
        if getattr(model, "classifier", None) is not None:
            # Each half of a blended score on its own, to see what the blend buys.
            parts = model.components(holdout)
            y = event_labels(scored, faults).to_numpy()
            metrics["val_unsupervised_pr_auc"] = evaluation.pr_auc(y, parts.unsupervised)
            metrics["val_classifier_pr_auc"] = evaluation.pr_auc(y, parts.probability)
    return metrics, scored


# The detection metrics a candidate logs, for the model (val_) and each baseline (baseline_).
LOGGED_DETECTION = (
    "pr_auc",
    "event_recall",
    f"precision_at_{TOP_K}",
    "false_alarms_per_100_cell_days",
    "recall_at_budget",
)


def detection_metrics(
    prefix: str, scored: pl.DataFrame, events: pl.DataFrame, params: ModelParams
) -> dict[str, float]:
    """`evaluation.detection_metrics` of flagged ROPs against the labelled events of their
    period, and the event recall at the threshold that spends the gate's false-alarm budget
    (`recall_at_budget`: detectors compared at equal alarm rates), under `<prefix>_<metric>`
    for the LOGGED_DETECTION metrics."""
    lo, hi = scored["ts"].min(), scored["ts"].max()
    in_window = evaluation.events_in(events, lo, hi)
    metrics = evaluation.detection_metrics(
        scored, in_window, params.rop_minutes, params.alerts.clear_after_rops, TOP_K
    )
    at_budget = evaluation.recall_at_budget(
        scored,
        in_window,
        params.train.gate_false_alarms_per_100_cell_days,
        params.rop_minutes,
        params.alerts.consecutive_rops,
        params.alerts.clear_after_rops,
    )
    metrics["recall_at_budget"] = at_budget["event_recall"]
    return {f"{prefix}_{name}": metrics[name] for name in LOGGED_DETECTION}


def _mae_ratio(model: AnomalyModel, holdout: pl.DataFrame) -> float:
    """Mean over watched KPIs of MAE(model) / MAE(hour-of-week median). Below 1 = better."""
    expected = model.expected(holdout)
    ratios = []
    for t in model.targets:
        naive = f"{t.name}_how_median"
        if naive not in holdout.columns:
            continue
        actual = holdout[t.name].cast(pl.Float64).to_numpy()
        guess = holdout[naive].cast(pl.Float64).to_numpy()
        pred = expected[f"expected_{t.name}"].to_numpy()
        ok = np.isfinite(actual) & np.isfinite(guess)
        if ok.sum() == 0:
            continue
        base = np.abs(actual[ok] - guess[ok]).mean()
        if base > 0:
            ratios.append(np.abs(actual[ok] - pred[ok]).mean() / base)
    return float(np.mean(ratios)) if ratios else float("nan")


def anomaly_baselines(
    split: training.Split, events: pl.DataFrame | None, params: ModelParams
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The per-cell z-score (ric-app-ad-cell), the per-cell hour-of-day z-score and the
    IsolationForest (O-RAN SC AD xApp) detectors on the same hold-out: their metrics and
    their scores (for the PR plot)."""
    holdout = split.holdout.sort("cell_id", "ts")
    detectors = {
        "zscore": zscore_detector(split.train, holdout, params),
        "hour_zscore": zscore_detector(split.train, holdout, params, by_hour=True),
        "iforest": isolation_forest(split.train, holdout, params),
    }
    out: dict[str, float] = {"baseline_seasonal_mae_ratio": 1.0}
    if events is not None and fault_events(events) is not None:
        for name, scored in detectors.items():
            out |= detection_metrics(f"baseline_{name}", scored, events, params)
    names = {
        "zscore": "per-cell z-score",
        "hour_zscore": "per-cell hour-of-day z-score",
        "iforest": "isolation forest",
    }
    return out, {names[n]: d["anomaly_score"].to_numpy() for n, d in detectors.items()}


def anomaly_rule(train: TrainSettings, labelled: bool) -> PromotionRule:
    """Judge by the labelled faults found at the gate's false-alarm budget when the hold-out
    has some (every detector at the same alarm rate, so alerting more buys nothing; PR-AUC
    over fault ROPs guards it and breaks ties); otherwise by how much better than a
    seasonal-naive guess the normal-behaviour model predicts."""
    if labelled:
        return PromotionRule(
            "val_recall_at_budget",
            ("val_pr_auc",),
            train.promotion_margin,
            train.guard_tolerance,
            secondary="val_pr_auc",
        )
    return PromotionRule(
        "val_mae_ratio",
        (),
        train.promotion_margin,
        train.guard_tolerance,
        {"val_mae_ratio": False},
    )


def train_anomaly(
    features: pl.DataFrame,
    events: pl.DataFrame | None,
    params: ModelParams,
    spec_hash: str,
    trainer: Trainer = train_local,
    profile: HourProfile | None = None,
) -> training.Candidate:
    """Fit the anomaly model on the older days (known faults left out; the fault classifier
    too where enough are labelled) and judge it, next to its baselines, on the newest.

    Args:
        events: labelled events (ground truth or an operator's labels); None or empty:
            judged by how well it predicts the KPIs (`val_mae_ratio`) alone.
        spec_hash: the hash of the feature spec `features` were built with; the model
            refuses features of another spec when it scores.
        trainer: how boosters are trained (here, or on a Dask cluster).
        profile: every cell's hour-of-day profile of the older days, when `features` are
            a sample of the network's cells; None: learned from the older days' rows.
    """
    split = training.split_by_time(features, params.train.holdout_days)
    fitting = anomaly_params(params.train, params.alerts)
    faults = fault_events(events)
    train = training.sample_rows(split.train, params.train.max_train_rows, fitting.seed)
    exclude = event_labels(train, faults) if faults is not None else None
    model = AnomalyModel.fit(
        train, spec_hash, fitting, exclude=exclude, trainer=trainer, profile=profile
    )
    supervised = fit_supervised(model, train, exclude, faults, params, trainer)
    model.profile = model.profile.resolve()  # what scoring reads, a third of the size
    metrics, scored = evaluate_anomaly(model, split.holdout, events, params)
    baselines, baseline_scores = anomaly_baselines(split, events, params)
    figures = {
        "residuals.png": plots.residual_hist(
            model.zscores(split.holdout.sort("cell_id", "ts")), "hold-out residuals"
        ),
        "worst_cells.png": plots.worst_cells(
            scored,
            events
            if events is not None
            else pl.DataFrame(schema=targets.SPAN_SCHEMA | {"type": pl.String()}),
            model.threshold,
        ),
    }
    if model.classifier is not None:
        figures["classifier_importance.png"] = plots.importance(
            model.classifier.importance(), "anomaly: fault classifier, top features"
        )
    if faults is not None:
        y = event_labels(scored, faults).to_numpy()
        all_scores = {"model": scored["anomaly_score"].to_numpy(), **baseline_scores}
        figures["pr_curve.png"] = plots.pr_curves(y, all_scores, "anomaly: fault ROPs on hold-out")
        dims = split.holdout.sort("cell_id", "ts").select(evaluation.SLICE_COLUMNS)
        figures["slices.png"] = plots.slice_table(
            evaluation.slice_metrics(dims, y, all_scores), "anomaly: hold-out PR-AUC per slice"
        )
    metrics["threshold"] = model.threshold
    return training.Candidate(
        NAME,
        model,
        {
            **asdict(fitting),
            "targets": len(model.targets),
            "watched_kpis": ",".join(model.watched),
            "kpis_left_out": "; ".join(f"{k}: {why}" for k, why in model.left_out.items())
            or "none",
            "frozen_kpis": ",".join(model.frozen_kpis) or "none",
            "features": len(model.feature_names),
            "supervised": supervised,
            "gate_false_alarms_per_100_cell_days": (
                params.train.gate_false_alarms_per_100_cell_days
            ),
        },
        metrics,
        baselines,
        anomaly_rule(params.train, not math.isnan(metrics.get("val_recall_at_budget", math.nan))),
        split,
        {name: plots.png(fig) for name, fig in figures.items()},
        split.holdout.height,
        model.coverage_line(),
    )


@dataclass(frozen=True)
class ZScoreBaseline:
    """The per-cell z-score detector (models.baselines), learned on recent feature rows:
    the anomaly scores published while no anomaly model is champion. The same detector the
    promotion gate measures the first model against."""

    reference: pl.DataFrame  # cell_id and the watched KPIs' values it learned from
    name: str = "baseline:zscore"
    what: str = "per-cell z-score"

    def score(self, features: pl.DataFrame, params: ModelParams) -> pl.DataFrame:
        test = by_keys(features)
        scored = zscore_detector(self.reference, test, params)
        kpis = zscore_kpis(self.reference, test, ZSCORE_THRESHOLD)
        return scored.select("anomaly_score", "is_anomaly").with_columns(anomaly_kpis=kpis)


class AnomalyFamily:
    """The anomaly family behind the ModelFamily interface."""

    name = NAME
    columns: Mapping[str, pl.DataType] = MappingProxyType(
        {
            "anomaly_score": pl.Float32(),  # as the models score
            "is_anomaly": pl.Boolean(),
            "anomaly_kpis": pl.List(pl.String()),
        }
    )
    settings_hint = "train.min_kpi_coverage"

    def fit(
        self, data: TrainingData, params: ModelParams, spec_hash: str, trainer: Trainer
    ) -> Candidate:
        return train_anomaly(
            data.features, data.events, params, spec_hash, trainer, profile=data.profile
        )

    def evaluate(
        self, candidate: Candidate, model: Any, data: TrainingData, params: ModelParams
    ) -> dict[str, float]:
        holdout = candidate.split.holdout.sort("cell_id", "ts")
        return evaluate_anomaly(model, holdout, data.events, params)[0]

    def score(
        self, model: Any, features: pl.DataFrame, params: ModelParams, predict: Predict
    ) -> pl.DataFrame:
        return score_anomaly(model, features, params, predict).select(list(self.columns))

    def explain(self, model: Any, top: int) -> list[tuple[str, float]]:
        gain: dict[str, float] = {}
        for booster in model.boosters.values():
            for name, value in top_gain(booster, model.feature_names, len(model.feature_names)):
                gain[name] = gain.get(name, 0.0) + value
        return sorted(gain.items(), key=lambda kv: -kv[1])[:top]

    def band(self, model: Any, features: pl.DataFrame, predict: Predict) -> pl.DataFrame | None:
        return model.band(features, predict=predict)

    def baseline(self, reference: pl.DataFrame, params: ModelParams) -> ZScoreBaseline:
        watched = [
            t.name
            for t in TARGETS
            if t.name in reference.columns and reference[t.name].null_count() < reference.height
        ]
        if not watched:
            raise NoDataError(
                "none of the KPIs the anomaly model watches holds a value "
                f"({', '.join(t.name for t in TARGETS)})"
            )
        return ZScoreBaseline(reference.select("cell_id", *watched))

    def serve(self, model: Any, frame: pl.DataFrame) -> pd.DataFrame:
        scored = model.score(frame)
        return scored.with_columns(pl.col("anomaly_kpis").list.join(",")).to_pandas()


FAMILY = AnomalyFamily()
