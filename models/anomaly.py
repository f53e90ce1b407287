"""Anomaly model: each cell judged against its own normal behaviour.

A watched KPI's evidence is how many of the cell's spreads at that hour of the day it is
from the cell's usual value there, in the direction that hurts: the cell's hour-of-day
profile of the training window (models.profile, workdays and weekends apart). Because
the profile does not follow a fault, a sustained outage, level shift or slow degradation
keeps scoring for as long as it lasts, not only at its onset.

Normal-behaviour LightGBM regressors, one per KPI that matters, predict what a KPI should
be from time of week, the cell's hour-of-week baselines and its values a day and a week
ago. They judge the cells the training window did not hold (their residual, standardised
by the cell's robust spread, plus a day's level against last week's), and their
expectation tells when a cell stops carrying its traffic and when a holiday explains a
fall in demand. Frozen counters, which neither can see (the repeated values look normal),
score from the feature store's stuck-value runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import lightgbm as lgb
import numpy as np
import polars as pl
import pyarrow as pa

from cellpulse.errors import NoDataError
from cellpulse.models.boosting import (
    BoosterParams,
    Predict,
    Trainer,
    best_rounds,
    lightgbm_predict,
    matrix,
    rows_of,
    train_local,
    training_matrix,
)
from cellpulse.models.profile import MEAN, SPREAD, HourProfile
from cellpulse.models.supervised import FaultClassifier, as_score, classifier_inputs
from cellpulse.rops import run_ids

Direction = Literal["low", "high", "both"]
Z_CAP = 50.0  # one broken KPI must not drown every other signal in the combined score
DRIVER_Z = 3.0  # a KPI counts as driving the score from this many robust spreads away
# An alerting row the classifier leads is explained by the most probable such row of its run
# within this trailing span: a fault's drivers do not change from one ROP to the next, and
# what a row shows never depends on rows after it (a ROP published live reads as re-scored).
EXPLAIN_SPAN = timedelta(hours=1)


@dataclass(frozen=True)
class TargetKpi:
    """A KPI the model watches, the direction in which a deviation is bad, and the smallest
    spread that counts (keeps a KPI that never moves, like availability, from dividing by ~0)."""

    name: str
    direction: Direction
    min_scale: float


TARGETS: tuple[TargetKpi, ...] = (
    TargetKpi("availability_pct", "low", 1.0),
    TargetKpi("dl_volume_mbit", "low", 50.0),
    TargetKpi("rrc_conn_mean", "low", 1.0),
    TargetKpi("dl_ue_thp_mbps", "low", 1.0),
    TargetKpi("rrc_sr_pct", "low", 0.5),
    TargetKpi("drop_rate_pct", "high", 0.3),
    TargetKpi("ho_sr_pct", "low", 0.5),
    TargetKpi("cqi_mean", "low", 0.2),
    TargetKpi("ul_interference_dbm", "high", 0.5),
    TargetKpi("dl_delay_ms", "high", 0.5),
)

# Frozen counters: the node repeats its last report. Residuals miss it (the frozen values
# look normal), so a run of exactly repeated, non-zero values on every one of these KPIs
# scores on its own, one spread per repeated ROP, as the pseudo-KPI "frozen_counters".
FROZEN = "frozen_counters"
FROZEN_KPIS = ("dl_volume_mbit", "rrc_conn_mean", "prb_util_dl_pct")
FROZEN_MIN_ROPS = 3
MIN_TARGET_ROWS = 100  # rows with a value a regressor needs to learn anything

CONTEXT_SUFFIXES = ("_lag_1d", "_lag_7d", "_how_median")
# A watched KPI's level over a day against last week's (features.spec.LevelChange): a level
# shift or a slow degradation that the ROP-by-ROP residual sees as noise adds up there.
CHANGE_SUFFIX = "_change_24h_vs_7d"
LEVEL_NEEDS_Z = 1.0
MIN_CHANGE_SCALE = 0.05  # a 5 % change of a day's level is within any cell's noise
CALENDAR = ("hour", "day_of_week", "hour_of_week", "is_weekend")
# Demand on a public holiday (settings.holidays, the features' `is_holiday`) falls like a
# weekend's while the day-old and week-old context says workday, and a network has too few
# holidays to learn one from. So on a holiday a demand KPI below its expectation is not
# evidence, unless it fell below HOLIDAY_FLOOR of it: a cell that stops carrying traffic
# is not on holiday.
DEMAND_KPIS = ("dl_volume_mbit", "rrc_conn_mean")
HOLIDAY_FLOOR = 0.2
# A cell that stops carrying the traffic it is expected to carry at this hour (every watched
# demand KPI at most SILENT_SHARE of its expectation) is down, however noisy the cell has
# been: it scores at once, at Z_CAP, as the pseudo-KPI "no_traffic", so an outage is alerted
# after the alert rule's run of ROPs whatever the ROP length or the cell's spread.
NO_TRAFFIC = "no_traffic"
SILENT_SHARE = 0.01
# Throughput, delay, drops and setup failures move with load: on a cell whose PRBs are
# nearly exhausted (the congestion rule's default, congestion.prb_util_min_pct) they say
# the cell is busy, not broken. There their bad-direction evidence leaves the fault score
# and shows as the pseudo-KPI "congestion", which `combine` names first and never scores.
LOAD_SENSITIVE = ("dl_ue_thp_mbps", "dl_delay_ms", "drop_rate_pct", "rrc_sr_pct")
CONGESTION = "congestion"
CONGESTED_PRB_PCT = 80.0


# The alert threshold from a false-alarm budget (see `budget_threshold`) never goes below
# the z at which a KPI starts to drive a score: an alert must name what is wrong.
MIN_BUDGET_THRESHOLD = DRIVER_Z
# How far past the training peaks' body the budget's quantile lies, relative to a Gumbel
# tail (see `budget_threshold`): 0.7 spent 0.39 false alarms per 100 cell-days at a
# 0.5 budget on the tuning worlds, a Gumbel tail (1.0) 0.15 at a third less recall.
TAIL_SCALE = 0.7


@dataclass(frozen=True)
class AnomalyParams(BoosterParams):
    threshold_quantile: float = 0.995  # without a budget: this quantile of training scores,
    min_threshold: float = 5.0  # and never below this
    min_kpi_coverage: float = 0.25  # share of training rows a watched KPI must hold a value in
    # Alerts per 100 cell-days the threshold is calibrated to on the training window, and
    # the alert rule's run length it is calibrated for; None: the quantile rule above.
    false_alarms_per_100_cell_days: float | None = None
    consecutive_rops: int = 3

    def regressor_params(self) -> dict[str, object]:
        # Huber: squared near the fit, linear in the tails, so faults hidden in the training
        # data pull less. Targets are standardised per KPI, so alpha = 1 is one spread.
        return self.lgb_params("huber", alpha=1.0)


def _newest_day(rows: pl.DataFrame) -> np.ndarray:
    """Which rows fall on the newest (UTC) day of `rows`: the check day for early stopping."""
    day = rows.get_column("ts").dt.date()
    return (day == day.max()).to_numpy()


def context_columns(columns: list[str]) -> list[str]:
    """Features a regressor may use: calendar, day-old and week-old values, baselines."""
    return [c for c in columns if c in CALENDAR or c.endswith(CONTEXT_SUFFIXES)]


@dataclass
class Scores:
    """An anomaly model's scores and their parts: `frame` (anomaly_score, anomaly_kpis from
    the residuals), the unsupervised score, and in supervised mode P(fault), the classifier's
    inputs (kept to explain alerts) and `classifier_led`, the rows above the threshold on
    the classifier's evidence."""

    frame: pl.DataFrame
    unsupervised: np.ndarray
    probability: np.ndarray | None = None
    inputs: pl.DataFrame | None = None
    classifier_led: np.ndarray | None = None


@dataclass
class AnomalyModel:
    """Fitted regressors, per-cell residual spreads, and the alert threshold."""

    feature_names: list[str]
    boosters: dict[str, lgb.Booster]
    cell_scale: pl.DataFrame  # cell_id + one column per target
    global_scale: dict[str, float]
    threshold: float
    spec_hash: str
    targets: tuple[TargetKpi, ...] = TARGETS
    params: AnomalyParams = field(default_factory=AnomalyParams)
    units: dict[str, tuple[float, float]] = field(default_factory=dict)
    # Supervised mode (see models.supervised): the fault classifier, and whether its
    # evidence is blended with the unsupervised score ("blend") or replaces it ("replace").
    classifier: FaultClassifier | None = None
    supervised: Literal["blend", "replace", "off"] = "off"
    # The TARGETS it does not watch, each with the reason (absent, too little data), and
    # the KPIs whose frozen runs it scores (those of FROZEN_KPIS the data holds).
    left_out: dict[str, str] = field(default_factory=dict)
    frozen_kpis: tuple[str, ...] = FROZEN_KPIS
    # Per cell, the centre and spread of each watched KPI's level change (CHANGE_SUFFIX)
    # on the training window: `<kpi>` and `<kpi>_spread`; empty: no level-change evidence.
    change_scale: pl.DataFrame = field(default_factory=pl.DataFrame)
    # Each cell's hour-of-day profile of the watched KPIs on the training window
    # (models.profile): where a cell has one, its KPIs are judged against it.
    profile: HourProfile = field(default_factory=HourProfile)

    @property
    def watched(self) -> tuple[str, ...]:
        """The KPIs it predicts and scores deviations of."""
        return tuple(t.name for t in self.targets)

    def coverage_line(self) -> str:
        """Which KPIs it watches and which it left out, and why: one line for a summary."""
        text = f"anomaly model watches {', '.join(self.watched)}"
        frozen = getattr(self, "frozen_kpis", FROZEN_KPIS)
        checked = f"frozen counters on {', '.join(frozen)}" if frozen else "no frozen-counter check"
        text += f"; {checked}"
        left_out = getattr(self, "left_out", {})
        if left_out:
            text += "; left out: " + "; ".join(f"{k} ({why})" for k, why in left_out.items())
        return text

    @classmethod
    def fit(
        cls,
        features: pl.DataFrame,
        spec_hash: str,
        params: AnomalyParams,
        exclude: pl.Series | None = None,
        trainer: Trainer = train_local,
        profile: HourProfile | None = None,
    ) -> AnomalyModel:
        """Fit on `features`; rows where `exclude` is True (known faults) are left out.

        `profile`: the cells' hour-of-day profiles of the training window, when they were
        learned from more cells than `features` holds (a national network trains on a
        sample of cells); by default, learned from the training rows.

        Watches each of TARGETS that holds a value in at least `params.min_kpi_coverage` of
        the training rows (and MIN_TARGET_ROWS rows); the others are in `left_out` with the
        reason. Raises NoDataError when none is left."""
        # The known faults are cut from the columns fitting reads alone: filtering the whole
        # feature frame would copy the classifier's and congestion model's inputs too.
        train = (
            features.select(_fit_columns(features.columns)).filter(~exclude)
            if exclude is not None
            else features
        )
        names = context_columns(train.columns)
        x = training_matrix(train, names)
        boosters = {}
        units: dict[str, tuple[float, float]] = {}
        left_out: dict[str, str] = {}
        targets = tuple(t for t in TARGETS if t.name in train.columns)
        left_out |= {t.name: "not delivered" for t in TARGETS if t not in targets}
        newest = _newest_day(train)
        regressor = params.regressor_params()
        for t in targets:
            y = train[t.name].cast(pl.Float64).to_numpy()
            ok = np.isfinite(y)
            why = _too_little(int(ok.sum()), y.size, params.min_kpi_coverage)
            if why:
                left_out[t.name] = why
                continue
            centre, spread = float(np.median(y[ok])), float(np.std(y[ok])) or 1.0
            standard = (y - centre) / spread
            rounds = params.num_trees
            fit, check = ok & ~newest, ok & newest
            if params.early_stopping_rounds and min(fit.sum(), check.sum()) >= 100:
                rounds = best_rounds(
                    regressor,
                    (x[fit], standard[fit]),
                    (x[check], standard[check]),
                    params.num_trees,
                    params.early_stopping_rounds,
                    names,
                )
            boosters[t.name] = trainer(
                regressor, rows_of(x, ok), rows_of(standard, ok), rounds, names
            )
            units[t.name] = (centre, spread)
        del x  # the regressors are trained: the threshold below needs memory, not the matrix
        targets = tuple(t for t in targets if t.name in boosters)
        if not targets:
            raise NoDataError(
                "the anomaly model has no KPI to watch: "
                + "; ".join(f"{k} {why}" for k, why in left_out.items())
                + f"; deliver one of them or lower train.min_kpi_coverage "
                f"({params.min_kpi_coverage:g})"
            )
        model = cls(
            names,
            boosters,
            pl.DataFrame({"cell_id": []}, schema={"cell_id": pl.String}),
            {},
            0.0,
            spec_hash,
            targets,
            params,
            units,
            left_out=left_out,
            frozen_kpis=scorable_frozen(train, params.min_kpi_coverage),
        )
        resid = model.residuals(train)
        # A cell's spread per KPI: the larger of its MAD and its 99th-percentile residual in the
        # bad direction / 2.33, so KPIs with heavy tails on quiet cells (ratios of few counts)
        # are not mistaken for faults.
        cell_spread = resid.group_by("cell_id").agg(
            pl.max_horizontal(
                1.4826 * (pl.col(t.name) - pl.col(t.name).median()).abs().median(),
                bad_deviation(pl.col(t.name), t.direction).quantile(0.99) / 2.33,
            ).alias(t.name)
            for t in targets
        )
        model.global_scale = {
            t.name: max(float(np.nanmedian(cell_spread[t.name].to_numpy())), t.min_scale)
            for t in targets
        }
        model.cell_scale = cell_spread.with_columns(
            pl.col(t.name)
            .fill_null(model.global_scale[t.name])
            .clip(lower_bound=max(t.min_scale, 0.25 * model.global_scale[t.name]))
            for t in targets
        )
        model.change_scale = change_spreads(train, targets)
        watched = [t.name for t in targets]
        model.profile = profile if profile is not None else HourProfile.learn(train, watched)
        # The threshold reads training scores as a new day would score, not in-sample.
        scores = model.combine(model.zscores(train, resid, cross_fitted=True))["anomaly_score"]
        budget = params.false_alarms_per_100_cell_days
        if budget is None:
            model.threshold = max(
                params.min_threshold, float(scores.quantile(params.threshold_quantile) or 0.0)
            )
        else:
            peaks = daily_peaks(train, scores, params.consecutive_rops)
            model.threshold = max(MIN_BUDGET_THRESHOLD, budget_threshold(peaks, budget))
        return model

    def expected(self, features: pl.DataFrame, predict: Predict = lightgbm_predict) -> pl.DataFrame:
        """The normal-behaviour prediction of each target KPI (`expected_<kpi>`).

        Args:
            predict: how each regressor scores the matrix (LightGBM's own, or compiled);
                every method that scores passes it on to here.
        """
        x = matrix(features, self.feature_names)
        return pl.DataFrame(
            {
                f"expected_{t.name}": predict(self.boosters[t.name], x) * self.units[t.name][1]
                + self.units[t.name][0]
                for t in self.targets
            }
        )

    def band(
        self, features: pl.DataFrame, width: float = DRIVER_Z, predict: Predict = lightgbm_predict
    ) -> pl.DataFrame:
        """What ops sees next to each watched KPI: cell_id, ts (and region), and per target
        KPI its value, the expected value and the band of `width` of the cell's spreads
        around it (`<kpi>`, `<kpi>_expected`, `<kpi>_low`, `<kpi>_high`): the cell's profile
        at that hour where it has one, else the regressor's expectation and the cell's
        robust spread. Outside the band, in the KPI's bad direction, is where it starts to
        drive the score."""
        exp = self.expected(features, predict)
        keys = [c for c in ("cell_id", "ts", "region") if c in features.columns]
        keyed = features.select(*keys, *(t.name for t in self.targets))
        profile = self._profile_for(features)
        parts = [keyed, exp] + ([profile.lookup(features)] if profile is not None else [])
        scaled = pl.concat(parts, how="horizontal").join(
            self.cell_scale, on="cell_id", how="left", suffix="_scale", maintain_order="left"
        )
        columns: list[pl.Expr] = []
        for t in self.targets:
            expected = pl.col(f"expected_{t.name}")
            spread = pl.col(f"{t.name}_scale").fill_null(self.global_scale[t.name])
            if t.name + MEAN in scaled.columns:
                expected = pl.coalesce(pl.col(t.name + MEAN).cast(pl.Float64), expected)
                at_hour = pl.max_horizontal(pl.col(t.name + SPREAD), pl.lit(t.min_scale))
                spread = pl.when(pl.col(t.name + MEAN).is_null()).then(spread).otherwise(at_hour)
            spread = spread * width
            columns += [
                pl.col(t.name).cast(pl.Float64),
                expected.alias(f"{t.name}_expected"),
                (expected - spread).alias(f"{t.name}_low"),
                (expected + spread).alias(f"{t.name}_high"),
            ]
        return scaled.select(*keys, *columns)

    def residuals(
        self, features: pl.DataFrame, predict: Predict = lightgbm_predict
    ) -> pl.DataFrame:
        """cell_id + actual minus expected, per target KPI."""
        exp = self.expected(features, predict)
        return features.select("cell_id").with_columns(
            (features[t.name].cast(pl.Float64) - exp[f"expected_{t.name}"]).alias(t.name)
            for t in self.targets
        )

    def zscores(
        self,
        features: pl.DataFrame,
        residuals: pl.DataFrame | None = None,
        predict: Predict = lightgbm_predict,
        cross_fitted: bool = False,
    ) -> pl.DataFrame:
        """Per target, how many spreads the KPI is off in its bad direction (>= 0).

        Args:
            cross_fitted: `features` are training rows: each is judged against its cell's
                profile without its own day (as scoring will judge a new day).
        """
        if residuals is None:
            residuals = self.residuals(features, predict)
        resid = residuals.with_row_index("_row")
        scaled = resid.join(self.cell_scale, on="cell_id", how="left", suffix="_scale")
        out = []
        for t in self.targets:
            scale = pl.col(f"{t.name}_scale").fill_null(self.global_scale[t.name])
            bad = bad_deviation(pl.col(t.name) / scale, t.direction)
            out.append(bad.clip(0, Z_CAP).fill_null(0.0).fill_nan(0.0).alias(t.name))
        z = scaled.sort("_row").select(out)
        changes = getattr(self, "change_scale", None)  # models pickled before it existed
        if changes is not None and changes.width > 1:
            # A day's level counts where the KPI is below its expectation now as well: a
            # surge a week ago makes today look low against it, not against the model.
            now = pl.col
            z = z.with_columns(
                pl.max_horizontal(
                    now(t.name),
                    pl.when(now(t.name) >= LEVEL_NEEDS_Z).then(pl.lit(level)).otherwise(0.0),
                ).alias(t.name)
                for t, level in self._level_z(features)
            )
        judged = self._profile_z(features, cross_fitted)
        if judged is not None:
            z = z.with_columns(pl.coalesce(judged[t.name], z[t.name]) for t in self.targets)
        z = _holiday_demand(z, features, residuals, self.targets)
        z = _no_traffic(z, features, residuals, self.targets)
        z = _explained_by_load(z, features)
        frozen = getattr(self, "frozen_kpis", FROZEN_KPIS)  # models pickled before it existed
        if frozen and has_frozen(features, frozen):
            return z.with_columns(features.select(frozen_z(frozen)).to_series())
        return z

    def _profile_for(self, features: pl.DataFrame) -> HourProfile | None:
        """The hour profiles `features` can be judged against: None without any (or rows
        without `ts`, which have no hour)."""
        profile = getattr(self, "profile", None)  # models pickled before it existed
        if profile is None or not profile.table.height or "ts" not in features.columns:
            return None
        return profile

    def _profile_z(self, features: pl.DataFrame, cross_fitted: bool = False) -> pl.DataFrame | None:
        """Per watched KPI, how many of the cell's spreads at that hour of the day it is
        from its profile in the bad direction (>= 0); null where the cell has no profile
        (a cell the training window did not hold), None without profiles at all. With
        `cross_fitted`, each row against the profile without its own cell-day (training
        rows, see `HourProfile.lookup_leaving_out`)."""
        profile = self._profile_for(features)
        if profile is None:
            return None
        kpis = [t for t in self.targets if t.name in profile.kpis and t.name in features.columns]
        values = features.select(t.name for t in kpis)
        usual = profile.lookup_leaving_out(features) if cross_fitted else profile.lookup(features)
        seen = pl.concat([values, usual], how="horizontal")
        out = []
        for t in kpis:
            mean, spread = pl.col(t.name + MEAN), pl.col(t.name + SPREAD)
            off = (pl.col(t.name).cast(pl.Float64) - mean) / pl.max_horizontal(
                spread, pl.lit(t.min_scale)
            )
            z = bad_deviation(off, t.direction).clip(0, Z_CAP).fill_nan(0.0)
            # A missing value is no evidence; a cell without a profile is judged elsewhere.
            out.append(pl.when(mean.is_null()).then(None).otherwise(z.fill_null(0.0)).alias(t.name))
        judged = seen.select(out) if out else pl.DataFrame()
        missing = [t.name for t in self.targets if t.name not in judged.columns]
        return judged.with_columns(pl.lit(None, pl.Float64).alias(k) for k in missing)

    def _level_z(self, features: pl.DataFrame) -> list[tuple[TargetKpi, pl.Series]]:
        """Per watched KPI with a level-change feature, how many of the cell's spreads its
        day-long level moved in the bad direction (>= 0)."""
        kpis = [t for t in self.targets if t.name in self.change_scale.columns]
        kpis = [t for t in kpis if t.name + CHANGE_SUFFIX in features.columns]
        if not kpis:
            return []
        joined = (
            features.select("cell_id", *(t.name + CHANGE_SUFFIX for t in kpis))
            .with_row_index("_row")
            .join(self.change_scale, on="cell_id", how="left")
            .sort("_row")
        )
        out = []
        for t in kpis:
            moved = (pl.col(t.name + CHANGE_SUFFIX) - pl.col(t.name)) / pl.col(f"{t.name}_spread")
            z = bad_deviation(moved, t.direction).clip(0, Z_CAP).fill_null(0.0).fill_nan(0.0)
            out.append((t, joined.select(z.alias(t.name)).to_series()))
        return out

    def fit_classifier(
        self,
        features: pl.DataFrame,
        in_fault: pl.Series,
        events: int,
        mode: Literal["blend", "replace"],
        trainer: Trainer = train_local,
    ) -> None:
        """Supervised mode: learn P(fault) from labelled rows (`in_fault`, events included),
        their deviations cross-fitted as the threshold's are (see `fit`): the classifier
        learns from deviations the size scoring will see."""
        inputs = classifier_inputs(features, self.zscores(features, cross_fitted=True))
        self.classifier = FaultClassifier.fit(inputs, in_fault, events, self.params, trainer)
        self.supervised = mode

    def score(self, features: pl.DataFrame, predict: Predict = lightgbm_predict) -> pl.DataFrame:
        """`anomaly_score` and `anomaly_kpis` (driving KPIs, most first), row for row."""
        scores = self.components(features, predict)
        # Rows served without `ts` are read as consecutive 15-minute ROPs in their order.
        ts = pl.col("ts") if "ts" in features.columns else _in_order(features.height)
        keys = features.select("cell_id", ts.alias("ts"))
        return self.explain(scores, keys, scores.classifier_led)

    def components(self, features: pl.DataFrame, predict: Predict = lightgbm_predict) -> Scores:
        """The score and what it is made of, before the classifier explains anything."""
        z = self.zscores(features, predict=predict)
        scored = self.combine(z)
        unsupervised = scored["anomaly_score"].to_numpy()
        classifier = getattr(self, "classifier", None)  # models pickled before it existed
        if classifier is None:
            return Scores(scored, unsupervised)
        inputs = classifier_inputs(features, z)
        probability = classifier.probability(inputs, predict)
        supervised = as_score(probability, self.threshold)
        replace = self.supervised == "replace"
        score = supervised if replace else np.maximum(unsupervised, supervised)
        # Where the classifier's evidence is the stronger (all rows, when it replaces the
        # residuals), its own per-feature contributions explain an alert (see `explain`).
        led = score > self.threshold
        if not replace:
            led &= supervised > unsupervised
        frame = scored.with_columns(pl.Series("anomaly_score", score))
        return Scores(frame, unsupervised, probability, inputs, led)

    def explain(self, scores: Scores, keys: pl.DataFrame, rows: np.ndarray | None) -> pl.DataFrame:
        """`scores.frame` with the classifier's drivers as `anomaly_kpis` on `rows` (a mask;
        scoring passes the classifier-led rows that raise an alert). `keys`: cell_id and ts
        of each row, sorted by them. Contributions cost far more than a prediction
        (bench/RESULTS.md), so a run of such rows of one cell is explained at few rows: each
        row by the most probable row of its run within the trailing EXPLAIN_SPAN."""
        if rows is None or not rows.any() or self.classifier is None or scores.inputs is None:
            return scores.frame
        assert scores.probability is not None
        frame = pl.DataFrame(
            {
                "cell_id": keys["cell_id"],
                "ts": keys["ts"],
                "_explain": rows,
                "_p": scores.probability,
            }
        ).with_row_index("_row")
        led = (
            frame.with_columns(run_ids(None, value="_explain").alias("_run"))
            .filter(pl.col("_explain"))
            .sort("_run", "ts")
        )
        runs = led.rolling("ts", period=EXPLAIN_SPAN, closed="right", group_by="_run").agg(
            pl.col("_row").last(),
            pl.col("_row")
            .sort_by("_p", descending=True, maintain_order=True)
            .first()
            .alias("_peak"),
        )
        peaks = runs["_peak"].unique().sort()
        drivers = pl.DataFrame(
            {
                "_peak": peaks,
                "_kpis": pl.Series(
                    self.classifier.drivers(scores.inputs[peaks.to_numpy()]),
                    dtype=pl.List(pl.String),
                ),
            }
        )
        explained = runs.select("_row", "_peak").join(drivers, on="_peak").select("_row", "_kpis")
        kpis = (
            scores.frame.select("anomaly_kpis")
            .with_row_index("_row")
            .join(explained, on="_row", how="left", maintain_order="left")
            .select(pl.coalesce("_kpis", "anomaly_kpis").alias("anomaly_kpis"))
        )
        return scores.frame.with_columns(kpis.to_series())

    def combine(self, z: pl.DataFrame) -> pl.DataFrame:
        """One score per row from the per-KPI z (see `zscores`).

        The score is the root of the summed squares of the three largest z: comparable across
        cells because every z is in the cell's own spreads; several KPIs off together (an
        outage) outrank one, and the many KPIs that are fine add no noise.
        """
        explained = z.get_column(CONGESTION) if CONGESTION in z.columns else None
        z = z.drop(CONGESTION, strict=False)
        zs = z.to_numpy()
        labels = pl.Series(z.columns, dtype=pl.String)
        # The three largest per row, then in order: a partial sort of every row is cheaper
        # than a full one.
        k = min(3, zs.shape[1])
        order = (
            np.argpartition(-zs, k - 1, axis=1)[:, :k]
            if zs.shape[1] > k
            else np.tile(np.arange(k), (zs.shape[0], 1))
        )
        top = np.take_along_axis(zs, order, axis=1)
        within = np.argsort(-top, axis=1, kind="stable")
        order = np.take_along_axis(order, within, axis=1)
        top = np.take_along_axis(top, within, axis=1)
        score = np.sqrt((top**2).sum(axis=1))
        # Driving KPIs, worst first: each of the top three whose z reaches DRIVER_Z. Built as
        # one Arrow list array from offsets (the top z are sorted, so a row's drivers are a
        # prefix of its three): a Python list per row is far slower on a national day.
        drives = top >= DRIVER_Z
        offsets = np.zeros(zs.shape[0] + 1, dtype=np.int32)
        np.cumsum(drives.sum(axis=1), out=offsets[1:])
        names = labels.gather(order[drives]).to_arrow()
        kpis = pl.Series(pa.ListArray.from_arrays(pa.array(offsets), names))
        if explained is not None:  # load that explains a busy cell's KPIs, named first
            busy = (explained >= DRIVER_Z).fill_null(False)
            kpis = (
                pl.DataFrame({"k": kpis, "b": busy})
                .select(
                    pl.when("b")
                    .then(pl.concat_list(pl.lit([CONGESTION]), pl.col("k")))
                    .otherwise(pl.col("k"))
                )
                .to_series()
            )
        return pl.DataFrame({"anomaly_score": score, "anomaly_kpis": kpis.alias("anomaly_kpis")})


def _in_order(rows: int) -> pl.Expr:
    """Timestamps for `rows` rows taken as consecutive 15-minute ROPs."""
    start = datetime(1970, 1, 1, tzinfo=UTC)
    return pl.datetime_range(start, start + timedelta(minutes=15 * max(rows - 1, 0)), "15m")


def _holiday_demand(
    z: pl.DataFrame, features: pl.DataFrame, residuals: pl.DataFrame, targets: tuple[TargetKpi, ...]
) -> pl.DataFrame:
    """`z` with the low-side evidence of DEMAND_KPIS dropped on holiday rows where the KPI
    kept at least HOLIDAY_FLOOR of its expectation (see DEMAND_KPIS)."""
    if "is_holiday" not in features.columns:
        return z
    # Boolean in the store, a float where scoring hands the model its matrix's columns.
    holiday = features["is_holiday"].cast(pl.Float64).fill_null(0.0) > 0
    if not holiday.any():
        return z
    out = []
    for t in targets:
        if t.name not in DEMAND_KPIS or t.direction != "low":
            continue
        actual = features[t.name].cast(pl.Float64)
        expected = actual - residuals[t.name]
        carried = (actual >= HOLIDAY_FLOOR * expected).fill_null(True)
        out.append(
            pl.when(pl.lit(holiday & carried)).then(0.0).otherwise(pl.col(t.name)).alias(t.name)
        )
    return z.with_columns(out) if out else z


def _explained_by_load(z: pl.DataFrame, features: pl.DataFrame) -> pl.DataFrame:
    """`z` with the LOAD_SENSITIVE KPIs' evidence moved to the CONGESTION column (their
    largest z) on rows at CONGESTED_PRB_PCT or more; without PRB utilisation, unchanged."""
    sensitive = [k for k in LOAD_SENSITIVE if k in z.columns]
    if not sensitive or "prb_util_dl_pct" not in features.columns:
        return z
    at_load = features["prb_util_dl_pct"].cast(pl.Float64) >= CONGESTED_PRB_PCT
    busy = pl.lit(at_load.fill_null(False))
    return z.with_columns(
        pl.when(busy).then(pl.max_horizontal(sensitive)).otherwise(0.0).alias(CONGESTION),
        *(pl.when(busy).then(0.0).otherwise(pl.col(k)).alias(k) for k in sensitive),
    )


def _no_traffic(
    z: pl.DataFrame, features: pl.DataFrame, residuals: pl.DataFrame, targets: tuple[TargetKpi, ...]
) -> pl.DataFrame:
    """`z` with the NO_TRAFFIC pseudo-KPI: Z_CAP where every watched demand KPI fell to
    SILENT_SHARE of an expectation of at least its smallest spread, else 0."""
    demand = [t for t in targets if t.name in DEMAND_KPIS]
    if not demand:
        return z
    silent = pl.Series([True] * features.height)
    for t in demand:
        actual = features[t.name].cast(pl.Float64)
        expected = actual - residuals[t.name]
        silent &= ((actual <= SILENT_SHARE * expected) & (expected >= t.min_scale)).fill_null(False)
    return z.with_columns(pl.Series(NO_TRAFFIC, np.where(silent.to_numpy(), Z_CAP, 0.0)))


def _fit_columns(columns: list[str]) -> list[str]:
    """What `AnomalyModel.fit` reads of its training rows: the keys, the regressors'
    context, and the watched KPIs with what their z-scores read (level changes, stuck-value
    runs, holidays, PRB load)."""
    watched = {t.name for t in TARGETS} | set(FROZEN_KPIS) | {"prb_util_dl_pct", "is_holiday"}
    reads = set(context_columns(columns)) | watched | {"cell_id", "ts"}
    return [c for c in columns if c in reads or c.endswith((CHANGE_SUFFIX, "_stuck_rops"))]


def _too_little(rows: int, total: int, min_share: float) -> str:
    """Why a KPI with `rows` values among `total` training rows cannot be watched ("" if
    it can)."""
    if rows == 0:
        return "no value in the training window"
    share = rows / total
    if share < min_share:
        return f"a value in {share:.0%} of training rows, train.min_kpi_coverage is {min_share:.0%}"
    if rows < MIN_TARGET_ROWS:
        return f"{rows} training rows with a value, {MIN_TARGET_ROWS} needed"
    return ""


def change_spreads(train: pl.DataFrame, targets: tuple[TargetKpi, ...]) -> pl.DataFrame:
    """Per cell, the median and robust spread of each target's level change (CHANGE_SUFFIX)
    on the training rows, `<kpi>` and `<kpi>_spread`: a cell whose weeks differ a lot
    needs a larger change to count. Cells without enough history take the median spread."""
    kpis = [t for t in targets if t.name + CHANGE_SUFFIX in train.columns]
    kpis = [t for t in kpis if train[t.name + CHANGE_SUFFIX].null_count() < train.height]
    if not kpis:
        return pl.DataFrame()
    change = {t.name: pl.col(t.name + CHANGE_SUFFIX).cast(pl.Float64) for t in kpis}
    per_cell = train.group_by("cell_id").agg(
        [change[t.name].median().alias(t.name) for t in kpis]
        + [
            pl.max_horizontal(
                1.4826 * (change[t.name] - change[t.name].median()).abs().median(),
                bad_deviation(change[t.name] - change[t.name].median(), t.direction).quantile(0.99)
                / 2.33,
            ).alias(f"{t.name}_spread")
            for t in kpis
        ]
    )
    typical: dict[str, float] = {}
    for t in kpis:
        median = per_cell[f"{t.name}_spread"].median()
        typical[t.name] = float(median) if isinstance(median, (int, float)) else 0.0
    return per_cell.with_columns(
        [pl.col(t.name).fill_null(0.0) for t in kpis]
        + [
            pl.col(f"{t.name}_spread")
            .fill_null(typical[t.name] or MIN_CHANGE_SCALE)
            .clip(lower_bound=max(MIN_CHANGE_SCALE, 0.5 * typical[t.name]))
            for t in kpis
        ]
    )


def daily_peaks(rows: pl.DataFrame, scores: pl.Series, consecutive: int) -> np.ndarray:
    """Per cell and UTC day, the highest score the alert rule could fire on: the largest
    minimum of `consecutive` adjacent ROPs' scores (an alert needs that many in a row)."""
    frame = rows.select("cell_id", "ts").with_columns(scores.alias("_s")).sort("cell_id", "ts")
    held = pl.col("_s").rolling_min(consecutive).over("cell_id")
    return (
        frame.with_columns(held.alias("_held"), pl.col("ts").dt.date().alias("_day"))
        .group_by("cell_id", "_day")
        .agg(pl.col("_held").max())
        .get_column("_held")
        .drop_nulls()
        .to_numpy()
    )


def budget_threshold(peaks: np.ndarray, per_100_cell_days: float) -> float:
    """The score above which about `per_100_cell_days` of 100 cell-days would raise an
    alert, from the cell-days' peaks (`daily_peaks`) of the training window.

    The top of the training peaks cannot be read directly: the faults nobody labelled sit
    there (a network has about as many faults as the budget allows false alarms), and
    100 cells × 10 days hold too few cell-days to read a 1-in-200 quantile. The peaks' body
    can: a daily maximum has an exponential upper tail (Gumbel), so the quantile of the
    budget's share is extrapolated from the median and the 90th percentile, which faults
    in a few percent of cell-days do not move. On the cross-fitted peaks of the training
    window (each day against a profile that did not see it) a Gumbel extrapolation errs
    high: TAIL_SCALE, chosen on the quality benchmark's tuning worlds, brings it to about
    the budget."""
    if peaks.size == 0:
        return float("inf")
    share = min(per_100_cell_days / 100, 0.5)
    q50, q90 = (float(q) for q in np.quantile(peaks, [0.5, 0.9]))
    return q50 + (q90 - q50) * TAIL_SCALE * float(np.log(0.5 / share) / np.log(5.0))


def scorable_frozen(features: pl.DataFrame, min_share: float) -> tuple[str, ...]:
    """The FROZEN_KPIS whose frozen runs can be scored on `features`: the stuck-run column is
    there and the KPI holds a value in at least `min_share` of the rows (a KPI the source
    does not deliver would veto every frozen run)."""
    kept = []
    for k in FROZEN_KPIS:
        if k in features.columns and f"{k}_stuck_rops" in features.columns:
            share = 1 - features[k].null_count() / max(features.height, 1)
            if share >= min_share and share > 0:
                kept.append(k)
    return tuple(kept)


def has_frozen(features: pl.DataFrame, kpis: tuple[str, ...] = FROZEN_KPIS) -> bool:
    """Whether `features` carry the stuck-run columns the frozen-counter score reads."""
    return all(k in features.columns and f"{k}_stuck_rops" in features.columns for k in kpis)


def frozen_z(kpis: tuple[str, ...] = FROZEN_KPIS) -> pl.Expr:
    """How many ROPs in a row every one of `kpis` has repeated exactly (zeros do not
    count: an idle cell legitimately reports zero), as a z from FROZEN_MIN_ROPS on."""
    runs = [pl.when(pl.col(k) != 0).then(pl.col(f"{k}_stuck_rops")).otherwise(0.0) for k in kpis]
    frozen = pl.min_horizontal(runs).cast(pl.Float64)
    return (
        pl.when(frozen >= FROZEN_MIN_ROPS)
        .then(frozen.clip(upper_bound=Z_CAP))
        .otherwise(0.0)
        .fill_null(0.0)
        .alias(FROZEN)
    )


def bad_deviation(value: pl.Expr, direction: Direction) -> pl.Expr:
    """The deviation in the direction that hurts (positive = worse)."""
    return {"low": -value, "high": value, "both": value.abs()}[direction]


def alert_flags(
    scored: pl.DataFrame, threshold: float, consecutive: int, rop_minutes: int
) -> pl.Series:
    """`is_anomaly`: the score has been above threshold for `consecutive` ROPs in a row,
    ending at this one. A missing ROP breaks the run. Expects rows sorted by (cell_id, ts)."""
    above = pl.col("anomaly_score") > threshold
    df = scored.select("cell_id", "ts", "anomaly_score").with_columns(
        run_ids(rop_minutes, value=above).alias("_run")
    )
    pos = pl.int_range(pl.len()).over("_run") + 1
    return df.select((above & (pos >= consecutive)).alias("is_anomaly")).to_series()
