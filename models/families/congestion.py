"""The congestion family: P(cell congested within the horizon) from a LightGBM classifier
(cellpulse.models.congestion) under the configured congestion rule, judged against
persistence, seasonal-naive and current-PRB-utilisation guesses, scored into `congestion_prob` and
`congestion_horizon`; before a model has earned the champion alias, the current PRB
utilisation stands in as the probability."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from cellpulse.errors import NoDataError
from cellpulse.features import targets
from cellpulse.lake import by_keys
from cellpulse.models import evaluation, plots, training
from cellpulse.models.boosting import Predict, Trainer, train_local
from cellpulse.models.congestion import CongestionModel, CongestionParams, horizon_label
from cellpulse.models.params import ModelParams
from cellpulse.models.promotion import PromotionRule
from cellpulse.models.training import Candidate, TrainingData
from cellpulse.settings import TrainSettings

NAME = "congestion"
PRB = "prb_util_dl_pct"


def congestion_params(train: TrainSettings) -> CongestionParams:
    return CongestionParams.from_settings(train)


def congestion_labels(
    features: pl.DataFrame,
    kpis: pl.DataFrame,
    params: ModelParams,
    rule: targets.AppliedRule | None = None,
) -> pl.DataFrame:
    """Per feature row: target and baseline labels (see features.targets.congestion_labels),
    under `rule` (default: the configured rule, applied to the KPIs `kpis` holds)."""
    return targets.congestion_labels(
        features, kpis, rule or params.congestion, params.rop_minutes, params.timezone
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


def prb_probability(prb_util_pct: pl.Expr) -> pl.Expr:
    """Current DL PRB utilisation / 100 as the probability of congestion."""
    return (prb_util_pct.cast(pl.Float64) / 100).clip(0.0, 1.0)


def congestion_baselines(
    holdout: pl.DataFrame, labels: pl.DataFrame
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Persistence, seasonal-naive and current-PRB-utilisation guesses on the same hold-out
    rows: their metrics and their scores (for the PR plot). `prb_util` is the current DL PRB
    utilisation / 100 taken as the probability (what `PrbBaseline` publishes): ranked, it is
    every PRB-threshold guess at once, so its PR-AUC is theirs."""
    known = labels["congested_within"].is_not_null().to_numpy()
    y = labels["congested_within"].fill_null(False).to_numpy()[known]
    scores = {
        "persistence": labels["persistence"].fill_null(False).cast(pl.Float64).to_numpy(),
        "seasonal": labels["seasonal"].cast(pl.Float64).to_numpy(),
    }
    if PRB in holdout.columns:  # without PRB data there is no PRB guess
        prb = holdout.select(prb_probability(pl.col(PRB).fill_null(0))).to_series()
        scores["prb_util"] = prb.to_numpy()
    out: dict[str, float] = {}
    for name, s in scores.items():
        s = s[known]
        out[f"baseline_{name}_pr_auc"] = evaluation.pr_auc(y, s)
        out[f"baseline_{name}_brier"] = float(np.mean((np.nan_to_num(s) - y) ** 2))
    return out, {k: v[known] for k, v in scores.items()}


def congestion_rule(train: TrainSettings) -> PromotionRule:
    """Judge by PR-AUC, with calibration (Brier score, lower is better) as the guard."""
    return PromotionRule(
        "val_pr_auc",
        ("val_brier",),
        train.promotion_margin,
        train.guard_tolerance,
        {"val_brier": False},
    )


def train_congestion(
    features: pl.DataFrame,
    kpis: pl.DataFrame,
    params: ModelParams,
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
    split = training.split_by_time(features, params.train.holdout_days)
    fitting = congestion_params(params.train)
    # The rule's conditions on the KPIs the data holds (NoDataError when none is left).
    rule = targets.apply_rule(params.congestion, targets.kpis_with_values(kpis))
    # The newest training days calibrate the probability: later than what the booster saw,
    # earlier than the hold-out it is judged on.
    fit_rows, calibration_rows = split.train, None
    if params.train.calibration_days:
        try:
            inner = training.split_by_time(split.train, params.train.calibration_days)
            fit_rows, calibration_rows = inner.train, inner.holdout
        except NoDataError:
            pass  # too few days to spare one: the raw probability is used
    train = training.sample_rows(fit_rows, params.train.max_train_rows, fitting.seed)
    train_labels = congestion_labels(train, kpis, params, rule)
    if not train_labels["congested_within"].any():
        raise NoDataError(
            f"no congestion in the training window under the rule ({rule.describe()}); "
            "widen the window or adjust the congestion.* settings"
        )
    model = CongestionModel.fit(
        train,
        train_labels["congested_within"],
        params.congestion.horizon_minutes,
        spec_hash,
        fitting,
        trainer,
        params.congestion.horizon,
    )
    calibrated = calibration_rows is not None and model.calibrate(
        calibration_rows,
        congestion_labels(calibration_rows, kpis, params, rule)["congested_within"],
    )
    holdout = split.holdout.sort("cell_id", "ts")
    labels = congestion_labels(holdout, kpis, params, rule)
    metrics, y, prob = evaluate_congestion(model, holdout, labels)
    known = labels["congested_within"].is_not_null().to_numpy()
    raw = model.predict_raw(holdout)[known]
    metrics["val_brier_uncalibrated"] = float(np.mean((raw - y) ** 2))
    baselines, base_scores = congestion_baselines(holdout, labels)
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
        NAME,
        model,
        {
            **asdict(fitting),
            "horizon": model.horizon,
            "features": len(model.feature_names),
            "calibrated": calibrated,
            "calibration_days": params.train.calibration_days,
            **{f"rule_{k}": v for k, v in params.congestion.model_dump().items()},
            "rule_applied": rule.describe(),
        },
        metrics,
        baselines,
        congestion_rule(params.train),
        split,
        {name: plots.png(fig) for name, fig in figures.items()},
        holdout.height,
        f"congestion rule: {rule.describe()}",
    )


@dataclass(frozen=True)
class PrbBaseline:
    """Current DL PRB utilisation as the probability of congestion: the guess the promotion
    gate measures the first model against (`prb_util` among the baselines), published while
    no congestion model is champion."""

    horizon: str
    name: str = "baseline:prb_util"
    what: str = "current PRB utilisation / 100"

    def score(self, features: pl.DataFrame, params: ModelParams) -> pl.DataFrame:
        prob = by_keys(features).select(prb_probability(pl.col(PRB))).to_series()
        return pl.DataFrame(
            {"congestion_prob": prob, "congestion_horizon": [self.horizon] * prob.len()},
            schema=dict(CongestionFamily.columns),
        )


class CongestionFamily:
    """The congestion family behind the ModelFamily interface."""

    name = NAME
    columns: Mapping[str, pl.DataType] = MappingProxyType(
        {"congestion_prob": pl.Float64(), "congestion_horizon": pl.String()}
    )
    settings_hint = "congestion.* settings"

    def fit(
        self, data: TrainingData, params: ModelParams, spec_hash: str, trainer: Trainer
    ) -> Candidate:
        return train_congestion(data.features, data.kpis, params, spec_hash, trainer)

    def evaluate(
        self, candidate: Candidate, model: Any, data: TrainingData, params: ModelParams
    ) -> dict[str, float]:
        holdout = candidate.split.holdout.sort("cell_id", "ts")
        labels = congestion_labels(holdout, data.kpis, params)
        return evaluate_congestion(model, holdout, labels)[0]

    def score(
        self, model: Any, features: pl.DataFrame, params: ModelParams, predict: Predict
    ) -> pl.DataFrame:
        prob = model.predict(by_keys(features), predict)
        return pl.DataFrame(
            {"congestion_prob": prob, "congestion_horizon": [model.horizon] * len(prob)},
            schema=dict(self.columns),
        )

    def explain(self, model: Any, top: int) -> list[tuple[str, float]]:
        return list(model.importance(top))

    def band(self, model: Any, features: pl.DataFrame, predict: Predict) -> pl.DataFrame | None:
        return None

    def baseline(self, reference: pl.DataFrame, params: ModelParams) -> PrbBaseline:
        if PRB not in reference.columns or reference[PRB].null_count() == reference.height:
            raise NoDataError(
                f"no PRB utilisation ({PRB}) in the data, so no congestion baseline either"
            )
        rule = params.congestion
        return PrbBaseline(horizon_label(rule.horizon, rule.horizon_minutes))

    def serve(self, model: Any, frame: pl.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"congestion_prob": model.predict(frame)})


FAMILY = CongestionFamily()
