"""Fit and evaluate both model families on a time-ordered split. No MLflow here: the result is
a candidate (model, metrics, baselines, figures) that the tracking edge logs and registers."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, time
from typing import Any

import numpy as np
import polars as pl

from cellpulse.errors import NoDataError
from cellpulse.features import targets
from cellpulse.features.targets import event_labels
from cellpulse.lake import by_keys
from cellpulse.models import evaluation, plots
from cellpulse.models.anomaly import AnomalyModel, AnomalyParams, alert_flags
from cellpulse.models.baselines import isolation_forest, zscore_detector
from cellpulse.models.boosting import Predict, Trainer, lightgbm_predict, train_local
from cellpulse.models.congestion import CongestionModel, CongestionParams
from cellpulse.models.evaluation import fault_events
from cellpulse.models.promotion import PromotionRule
from cellpulse.settings import Settings
from cellpulse.window import DayWindow

ANOMALY = "anomaly"
CONGESTION = "congestion"
TOP_K = 20


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


def _sample(df: pl.DataFrame, max_rows: int, seed: int) -> pl.DataFrame:
    return df if df.height <= max_rows else df.sample(max_rows, seed=seed).sort("cell_id", "ts")


# ---------------------------------------------------------------- anomaly


def anomaly_params(settings: Settings) -> AnomalyParams:
    return replace(
        AnomalyParams.from_settings(settings.train),
        min_kpi_coverage=settings.train.min_kpi_coverage,
    )


def score_anomaly(
    model: AnomalyModel,
    features: pl.DataFrame,
    settings: Settings,
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
        settings.alerts.consecutive_rops,
        settings.rop_minutes,
    )
    # The classifier explains the alerts it raises (its contributions are costly: alerting
    # rows only, not every row above the threshold).
    led = scores.classifier_led
    explained = model.explain(
        scores, feats["cell_id"], None if led is None else led & flags.to_numpy()
    )
    return pl.concat([keys, explained], how="horizontal").with_columns(flags)


def fit_supervised(
    model: AnomalyModel,
    train: pl.DataFrame,
    in_fault: pl.Series | None,
    faults: pl.DataFrame | None,
    settings: Settings,
    trainer: Trainer,
) -> str:
    """Supervised mode: fit the fault classifier where the training window holds enough
    labelled faults. Returns what was done, for the run's params."""
    mode = settings.train.supervised
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
    if events < settings.train.supervised_min_events:
        return (
            f"off ({events} labelled fault events in the training window, "
            f"{settings.train.supervised_min_events} needed)"
        )
    model.fit_classifier(train, in_fault, events, mode, trainer)
    return f"{mode} ({events} labelled fault events)"


def evaluate_anomaly(
    model: AnomalyModel, holdout: pl.DataFrame, events: pl.DataFrame | None, settings: Settings
) -> tuple[dict[str, float], pl.DataFrame]:
    """Hold-out metrics of an anomaly model. With labelled events: ranking and alerting
    quality; always: how much closer to the truth than a seasonal-naive guess it predicts."""
    scored = score_anomaly(model, holdout, settings)
    holdout = holdout.sort("cell_id", "ts")
    metrics: dict[str, float] = {"val_mae_ratio": _mae_ratio(model, holdout)}
    faults = fault_events(events)
    if events is not None and faults is not None:
        metrics |= detection_metrics("val", scored, events, settings)
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
)


def detection_metrics(
    prefix: str, scored: pl.DataFrame, events: pl.DataFrame, settings: Settings
) -> dict[str, float]:
    """`evaluation.detection_metrics` of flagged ROPs against the labelled events of their
    period, under `<prefix>_<metric>` for the LOGGED_DETECTION metrics."""
    lo, hi = scored["ts"].min(), scored["ts"].max()
    metrics = evaluation.detection_metrics(
        scored,
        evaluation.events_in(events, lo, hi),
        settings.rop_minutes,
        settings.alerts.clear_after_rops,
        TOP_K,
    )
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
    split: Split, events: pl.DataFrame | None, settings: Settings
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The per-cell z-score (ric-app-ad-cell) and IsolationForest (O-RAN SC AD xApp)
    detectors on the same hold-out: their metrics and their scores (for the PR plot)."""
    holdout = split.holdout.sort("cell_id", "ts")
    detectors = {
        "zscore": zscore_detector(split.train, holdout, settings),
        "iforest": isolation_forest(split.train, holdout, settings),
    }
    out: dict[str, float] = {"baseline_seasonal_mae_ratio": 1.0}
    if events is not None and fault_events(events) is not None:
        for name, scored in detectors.items():
            out |= detection_metrics(f"baseline_{name}", scored, events, settings)
    names = {"zscore": "per-cell z-score", "iforest": "isolation forest"}
    return out, {names[n]: d["anomaly_score"].to_numpy() for n, d in detectors.items()}


def anomaly_rule(settings: Settings, labelled: bool) -> PromotionRule:
    """Judge by finding labelled faults when the hold-out has some; otherwise by how much
    better than a seasonal-naive guess the normal-behaviour model predicts."""
    if labelled:
        return PromotionRule(
            "val_pr_auc",
            ("val_event_recall",),
            settings.train.promotion_margin,
            settings.train.guard_tolerance,
        )
    return PromotionRule(
        "val_mae_ratio",
        (),
        settings.train.promotion_margin,
        settings.train.guard_tolerance,
        {"val_mae_ratio": False},
    )


def train_anomaly(
    features: pl.DataFrame,
    events: pl.DataFrame | None,
    settings: Settings,
    spec_hash: str,
    trainer: Trainer = train_local,
) -> Candidate:
    """Fit the anomaly model on the older days (known faults left out; the fault classifier
    too where enough are labelled) and judge it, next to its baselines, on the newest.

    Args:
        events: labelled events (ground truth or an operator's labels); None or empty:
            judged by how well it predicts the KPIs (`val_mae_ratio`) alone.
        spec_hash: the hash of the feature spec `features` were built with; the model
            refuses features of another spec when it scores.
        trainer: how boosters are trained (here, or on a Dask cluster).
    """
    split = split_by_time(features, settings.train.holdout_days)
    params = anomaly_params(settings)
    faults = fault_events(events)
    train = _sample(split.train, settings.train.max_train_rows, params.seed)
    exclude = event_labels(train, faults) if faults is not None else None
    model = AnomalyModel.fit(train, spec_hash, params, exclude=exclude, trainer=trainer)
    supervised = fit_supervised(model, train, exclude, faults, settings, trainer)
    metrics, scored = evaluate_anomaly(model, split.holdout, events, settings)
    baselines, baseline_scores = anomaly_baselines(split, events, settings)
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
    return Candidate(
        ANOMALY,
        model,
        {
            **asdict(params),
            "targets": len(model.targets),
            "watched_kpis": ",".join(model.watched),
            "kpis_left_out": "; ".join(f"{k}: {why}" for k, why in model.left_out.items())
            or "none",
            "frozen_kpis": ",".join(model.frozen_kpis) or "none",
            "features": len(model.feature_names),
            "supervised": supervised,
        },
        metrics,
        baselines,
        anomaly_rule(settings, not math.isnan(metrics.get("val_pr_auc", math.nan))),
        split,
        {name: plots.png(fig) for name, fig in figures.items()},
        split.holdout.height,
        model.coverage_line(),
    )


# ---------------------------------------------------------------- congestion


def congestion_params(settings: Settings) -> CongestionParams:
    return CongestionParams.from_settings(settings.train)


def congestion_labels(
    features: pl.DataFrame,
    kpis: pl.DataFrame,
    settings: Settings,
    rule: targets.AppliedRule | None = None,
) -> pl.DataFrame:
    """Per feature row: target and baseline labels (see features.targets.congestion_labels),
    under `rule` (default: the configured rule, applied to the KPIs `kpis` holds)."""
    return targets.congestion_labels(
        features, kpis, rule or settings.congestion, settings.rop_minutes, settings.timezone
    )


def evaluate_congestion(
    model: CongestionModel, holdout: pl.DataFrame, labels: pl.DataFrame
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Hold-out metrics of a congestion model on the rows whose target is known, with those
    rows' targets and probabilities (for the figures)."""
    known = labels["congested_within"].is_not_null().to_numpy()
    y = labels["congested_within"].fill_null(False).to_numpy()[known]
    prob = model.predict(holdout)[known]
    return evaluation.classification_metrics("val", y, prob), y, prob


def congestion_baselines(
    holdout: pl.DataFrame, labels: pl.DataFrame, settings: Settings
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Persistence, seasonal-naive and PRB-threshold guesses on the same hold-out rows:
    their metrics and their scores (for the PR plot)."""
    known = labels["congested_within"].is_not_null().to_numpy()
    y = labels["congested_within"].fill_null(False).to_numpy()[known]
    scores = {
        "persistence": labels["persistence"].fill_null(False).cast(pl.Float64).to_numpy(),
        "seasonal": labels["seasonal"].cast(pl.Float64).to_numpy(),
    }
    if "prb_util_dl_pct" in holdout.columns:  # without PRB data there is no PRB guess
        scores["threshold"] = (holdout["prb_util_dl_pct"].fill_null(0) / 100).to_numpy()
    out: dict[str, float] = {}
    for name, s in scores.items():
        s = s[known]
        out[f"baseline_{name}_pr_auc"] = evaluation.pr_auc(y, s)
        out[f"baseline_{name}_brier"] = float(np.mean((np.nan_to_num(s) - y) ** 2))
    return out, {k: v[known] for k, v in scores.items()}


def congestion_rule(settings: Settings) -> PromotionRule:
    """Judge by PR-AUC, with calibration (Brier score, lower is better) as the guard."""
    return PromotionRule(
        "val_pr_auc",
        ("val_brier",),
        settings.train.promotion_margin,
        settings.train.guard_tolerance,
        {"val_brier": False},
    )


def train_congestion(
    features: pl.DataFrame,
    kpis: pl.DataFrame,
    settings: Settings,
    spec_hash: str,
    trainer: Trainer = train_local,
) -> Candidate:
    """Fit the congestion model on the older days, calibrate it on the newest of them and
    judge it, next to its baselines, on the hold-out days.

    Args:
        kpis: the KPIs the congestion labels come from; they must reach a week before the
            features (seasonal baseline) and the horizon after them.
        spec_hash: the hash of the feature spec `features` were built with.
        trainer: how the booster is trained (here, or on a Dask cluster).
    """
    split = split_by_time(features, settings.train.holdout_days)
    params = congestion_params(settings)
    # The rule's conditions on the KPIs the data holds (NoDataError when none is left).
    rule = targets.apply_rule(settings.congestion, targets.kpis_with_values(kpis))
    # The newest training days calibrate the probability: later than what the booster saw,
    # earlier than the hold-out it is judged on.
    fit_rows, calibration_rows = split.train, None
    if settings.train.calibration_days:
        try:
            inner = split_by_time(split.train, settings.train.calibration_days)
            fit_rows, calibration_rows = inner.train, inner.holdout
        except NoDataError:
            pass  # too few days to spare one: the raw probability is used
    train = _sample(fit_rows, settings.train.max_train_rows, params.seed)
    train_labels = congestion_labels(train, kpis, settings, rule)
    if not train_labels["congested_within"].any():
        raise NoDataError(
            f"no congestion in the training window under the rule ({rule.describe()}); "
            "widen the window or adjust the congestion.* settings"
        )
    model = CongestionModel.fit(
        train,
        train_labels["congested_within"],
        settings.congestion.horizon_minutes,
        spec_hash,
        params,
        trainer,
        settings.congestion.horizon,
    )
    calibrated = calibration_rows is not None and model.calibrate(
        calibration_rows,
        congestion_labels(calibration_rows, kpis, settings, rule)["congested_within"],
    )
    holdout = split.holdout.sort("cell_id", "ts")
    labels = congestion_labels(holdout, kpis, settings, rule)
    metrics, y, prob = evaluate_congestion(model, holdout, labels)
    known = labels["congested_within"].is_not_null().to_numpy()
    raw = model.predict_raw(holdout)[known]
    metrics["val_brier_uncalibrated"] = float(np.mean((raw - y) ** 2))
    baselines, base_scores = congestion_baselines(holdout, labels, settings)
    figures = {
        "pr_curve.png": plots.pr_curves(
            y, {"model": prob, **base_scores}, f"congestion {model.horizon_phrase}: hold-out"
        ),
        "calibration_curve.png": plots.calibration(
            y,
            {"model (calibrated)": prob, "model (raw)": raw} if calibrated else {"model": prob},
            f"congestion {model.horizon_phrase}: hold-out reliability",
        ),
        "feature_importance.png": plots.importance(model.importance(), "congestion: top features"),
        "slices.png": plots.slice_table(
            evaluation.slice_metrics(
                holdout.filter(pl.Series(known)).select(evaluation.SLICE_COLUMNS),
                y,
                {"model": prob, **base_scores},
            ),
            f"congestion {model.horizon_phrase}: hold-out PR-AUC per slice",
        ),
    }
    return Candidate(
        CONGESTION,
        model,
        {
            **asdict(params),
            "horizon": model.horizon,
            "features": len(model.feature_names),
            "calibrated": calibrated,
            "calibration_days": settings.train.calibration_days,
            **{f"rule_{k}": v for k, v in settings.congestion.model_dump().items()},
            "rule_applied": rule.describe(),
        },
        metrics,
        baselines,
        congestion_rule(settings),
        split,
        {name: plots.png(fig) for name, fig in figures.items()},
        holdout.height,
        f"congestion rule: {rule.describe()}",
    )


def evaluate_on_holdout(
    candidate: Candidate,
    model: Any,
    events: pl.DataFrame | None,
    kpis: pl.DataFrame,
    settings: Settings,
) -> dict[str, float]:
    """Metrics of another model (the champion) on the candidate's own hold-out, so the
    promotion gate compares like with like."""
    holdout = candidate.split.holdout.sort("cell_id", "ts")
    if candidate.family == ANOMALY:
        return evaluate_anomaly(model, holdout, events, settings)[0]
    labels = congestion_labels(holdout, kpis, settings)
    return evaluate_congestion(model, holdout, labels)[0]
