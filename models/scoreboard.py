"""The scoreboard: how published scores measure up against ground truth, next to baselines,
per anomaly type and per slice (area type, band, region).

A long table, one row per (family, detector, slice_kind, slice, metric, value), so the same
metric names come out every time and any view is a pivot of it. The anomaly metrics are
`models.evaluation.detection_metrics`, defined there once for training and the scoreboard,
each detector also judged at the threshold that spends the same false-alarm budget
(`train.gate_false_alarms_per_100_cell_days`, the promotion gate's): detectors that alert at
different rates are compared at equal ones (`*_at_budget`).

The published scores are judged by who made them: rows a family's champion scored are the
detector `model`; rows its baseline scored before there was a champion are the detector named
as the score table names that baseline (`baseline:zscore`, `baseline:prb_util`), never `model`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import cast

import numpy as np
import polars as pl

from cellpulse.features.builder import with_derived_kpis
from cellpulse.features.targets import congestion_labels
from cellpulse.models import evaluation
from cellpulse.models.baselines import isolation_forest, zscore_detector
from cellpulse.models.families.congestion import PRB, prb_probability
from cellpulse.models.family import model_columns
from cellpulse.models.headline import HEADLINE
from cellpulse.models.params import ModelParams
from cellpulse.models.scoring import BASELINE_VERSION

SLICE_KINDS = ("area_type", "band", "region")
COLUMNS = ("family", "detector", "slice_kind", "slice", "metric", "value")


def _rows(
    family: str, detector: str, kind: str, slice_: str, metrics: dict[str, float]
) -> list[dict[str, object]]:
    return [
        {
            "family": family,
            "detector": detector,
            "slice_kind": kind,
            "slice": slice_,
            "metric": name,
            "value": float(value),
        }
        for name, value in metrics.items()
    ]


# ---------------------------------------------------------------------------- who scored

SCORER = "_scorer"  # the published detector a score row belongs to


def with_scorer(scores: pl.DataFrame, family: str) -> pl.DataFrame:
    """`scores` with `_scorer`: `model` where the family's champion scored the row, the
    baseline's name (`baseline:zscore`) where its baseline did, null where the family did
    not score it. A table without model columns was scored by the model throughout."""
    name, version, _ = model_columns(family)
    if name not in scores.columns:
        return scores.with_columns(pl.lit("model").alias(SCORER))
    scorer = (
        pl.when(pl.col(name).is_null())
        .then(pl.lit(None, pl.String))
        .when(pl.col(version) == BASELINE_VERSION)
        .then(pl.col(name))
        .otherwise(pl.lit("model"))
    )
    return scores.with_columns(scorer.alias(SCORER))


def scored_by(scores: pl.DataFrame, families: Iterable[str]) -> pl.DataFrame:
    """Which models scored the rows: family, model, version, rows (a baseline's version
    reads `baseline`), largest share first within a family."""
    parts = []
    for family in families:
        name, version, _ = model_columns(family)
        if name not in scores.columns:
            continue
        parts.append(
            scores.filter(pl.col(name).is_not_null())
            .group_by(pl.col(name).alias("model"), pl.col(version).alias("version"))
            .agg(pl.len().cast(pl.Int64).alias("rows"))
            .sort("rows", "model", descending=[True, False])
            .select(pl.lit(family).alias("family"), "model", "version", "rows")
        )
    schema = {"family": pl.String, "model": pl.String, "version": pl.String, "rows": pl.Int64}
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def unscored_families(scores: pl.DataFrame, families: Iterable[str]) -> list[str]:
    """The families none of whose rows in `scores` carry a score."""
    return [f for f in families if with_scorer(scores, f)[SCORER].null_count() == scores.height]


def _published(scores: pl.DataFrame, family: str) -> dict[str, pl.DataFrame]:
    """The family's scored rows per published detector (`model` first, then baselines)."""
    tagged = with_scorer(scores, family).filter(pl.col(SCORER).is_not_null())
    names = sorted(set(tagged[SCORER].to_list()), key=lambda n: (n != "model", n))
    return {n: tagged.filter(pl.col(SCORER) == n).drop(SCORER) for n in names}


# ---------------------------------------------------------------------------- anomaly


def _derived(kpis: pl.DataFrame, params: ModelParams) -> pl.DataFrame:
    """Contract KPIs with the derived ones the z-score baseline watches (ratios, rates),
    sorted by (cell_id, ts)."""
    return with_derived_kpis(kpis, params.min_denominator, params.rop_minutes).sort("cell_id", "ts")


def anomaly_board(
    detectors: dict[str, pl.DataFrame],
    events: pl.DataFrame,
    topology: pl.DataFrame | None,
    params: ModelParams,
    k: int,
) -> list[dict[str, object]]:
    """Board rows of each anomaly detector: overall (at its own alert threshold and at the
    false-alarm budget), per fault type (recall and delay, both ways), and per slice of the
    topology."""

    def metrics(
        flagged: pl.DataFrame, labelled: pl.DataFrame, ranking: bool = True
    ) -> dict[str, float]:
        return evaluation.detection_metrics(
            flagged, labelled, params.rop_minutes, params.alerts.clear_after_rops, k, ranking
        )

    per_type = ("events", "event_recall", "median_detection_delay_rops")
    rows: list[dict[str, object]] = []
    for name, flagged in detectors.items():
        lo, hi = cast(datetime, flagged["ts"].min()), cast(datetime, flagged["ts"].max())
        in_window = evaluation.events_in(events, lo, hi)
        at_budget, budget_flagged = flagged_at_budget(flagged, in_window, params)
        rows += _rows("anomaly", name, "all", "all", metrics(flagged, in_window) | at_budget)
        for kind in sorted(set(in_window.filter(pl.col("kind") == "fault")["type"])):
            typed = in_window.filter((pl.col("type") == kind) | (pl.col("kind") == "load"))
            m = metrics(flagged, typed, ranking=False)
            b = metrics(budget_flagged, typed, ranking=False)
            rows += _rows(
                "anomaly",
                name,
                "type",
                kind,
                {x: m[x] for x in per_type}
                | {
                    "recall_at_budget": b["event_recall"],
                    "median_detection_delay_rops_at_budget": b["median_detection_delay_rops"],
                },
            )
        if topology is not None:
            for kind_name, part, part_events in _slices(flagged, in_window, topology):
                m = metrics(part, part_events)
                rows += _rows("anomaly", name, kind_name[0], kind_name[1], m)
    return rows


def flagged_at_budget(
    flagged: pl.DataFrame, events: pl.DataFrame, params: ModelParams
) -> tuple[dict[str, float], pl.DataFrame]:
    """One detector judged at the threshold that spends the gate's false-alarm budget
    (`evaluation.recall_at_budget`): its figures there, `*_at_budget`, and its ROPs flagged
    at that threshold (sorted by cell_id, ts), for the per-type figures."""
    budget = params.train.gate_false_alarms_per_100_cell_days
    consecutive, rop = params.alerts.consecutive_rops, params.rop_minutes
    flagged = flagged.sort("cell_id", "ts")
    m = evaluation.recall_at_budget(
        flagged, events, budget, rop, consecutive, params.alerts.clear_after_rops
    )
    threshold = m["threshold"]
    out = {
        "recall_at_budget": m["event_recall"],
        "alert_precision_at_budget": m["alert_precision"],
        "false_alarms_per_100_cell_days_at_budget": m["false_alarms_per_100_cell_days"],
        "median_detection_delay_rops_at_budget": m["median_detection_delay_rops"],
        # No ROP can alert at all (too few in a row): no threshold to report.
        "threshold_at_budget": threshold if np.isfinite(threshold) else float("nan"),
    }
    return out, evaluation.flagged_at(flagged, threshold, consecutive, rop)


def _slices(
    scored: pl.DataFrame, events: pl.DataFrame, topology: pl.DataFrame
) -> Iterable[tuple[tuple[str, str], pl.DataFrame, pl.DataFrame]]:
    attrs = topology.select("cell_id", *[c for c in SLICE_KINDS if c in topology.columns])
    tagged = scored.join(attrs, on="cell_id", how="left")
    tagged_events = events.join(attrs, on="cell_id", how="left")
    for kind in SLICE_KINDS:
        if kind not in attrs.columns:
            continue
        for value in sorted(v for v in tagged[kind].unique().to_list() if v is not None):
            yield (
                (kind, value),
                tagged.filter(pl.col(kind) == value),
                tagged_events.filter(pl.col(kind) == value),
            )


# ---------------------------------------------------------------------------- congestion


def congestion_detectors(
    scores: pl.DataFrame, kpis: pl.DataFrame, params: ModelParams
) -> dict[str, pl.DataFrame]:
    """Each detector's score on the scored rows whose target is known: the published ones
    (`model`, a baseline) on the rows they scored, the reference baselines on every row the
    family scored. The target is the configured rule applied to the KPIs the data holds, so
    no labelled events are needed."""
    tagged = with_scorer(scores, "congestion").filter(pl.col(SCORER).is_not_null())
    labels = congestion_labels(tagged, kpis, params.congestion, params.rop_minutes, params.timezone)
    kpi_cols = ["cell_id", "ts"] + ([PRB] if PRB in kpis.columns else [])
    joined = (
        tagged.select("cell_id", "ts", "congestion_prob", SCORER)
        .join(labels, on=["cell_id", "ts"], how="left")
        .join(kpis.select(kpi_cols), on=["cell_id", "ts"], how="left")
        .filter(pl.col("congested_within").is_not_null())
    )
    published = sorted(set(joined[SCORER].to_list()), key=lambda n: (n != "model", n))
    out = {
        name: joined.filter(pl.col(SCORER) == name).select(
            "cell_id", "ts", "congested_within", pl.col("congestion_prob").alias("score")
        )
        for name in published
    }
    reference = {
        "persistence": pl.col("persistence").fill_null(False).cast(pl.Float64),
        "seasonal": pl.col("seasonal").cast(pl.Float64),
    }
    if PRB in kpis.columns:  # current PRB utilisation as the probability (what
        # `baseline:prb_util` publishes), for every row the family scored
        reference["prb_util"] = prb_probability(pl.col(PRB).fill_null(0))
    for name, expr in reference.items():
        out[name] = joined.select("cell_id", "ts", "congested_within", expr.alias("score"))
    return out


def congestion_metrics(scored: pl.DataFrame, threshold: float = 0.5) -> dict[str, float]:
    """One congestion detector's figures on rows of `congested_within` and its `score`."""
    y = scored["congested_within"].to_numpy().astype(int)
    s = scored["score"].to_numpy().astype(float)
    m = evaluation.classification_metrics("x", y, np.nan_to_num(s), threshold)
    return {
        "rows": float(len(y)),
        "positives": float(y.sum()),
        "pr_auc": evaluation.pr_auc(y, s),
        "brier": m["x_brier"],
        "precision": m["x_precision"],
        "recall": m["x_recall"],
    }


def congestion_board(
    scores: pl.DataFrame, kpis: pl.DataFrame, topology: pl.DataFrame | None, params: ModelParams
) -> list[dict[str, object]]:
    """Board rows of the congestion model and its baselines, overall (with the model's lift
    over each naive guess, on the rows the model scored) and per slice of the topology."""
    naive = ("persistence", "seasonal", "prb_util")
    detectors = congestion_detectors(scores, kpis, params)
    rows: list[dict[str, object]] = []
    metrics = {name: congestion_metrics(df) for name, df in detectors.items()}
    for name, m in metrics.items():
        if name == "model":
            keys = detectors["model"].select("cell_id", "ts")
            for base in (b for b in naive if b in detectors):
                same_rows = detectors[base].join(keys, on=["cell_id", "ts"], how="semi")
                ref = congestion_metrics(same_rows)["pr_auc"]
                m[f"lift_over_{base}"] = m["pr_auc"] / ref if ref and ref == ref else float("nan")
        rows += _rows("congestion", name, "all", "all", m)
        if topology is not None:
            empty = pl.DataFrame(schema={"cell_id": pl.String})
            for (kind, value), part, _ in _slices(detectors[name], empty, topology):
                sm = congestion_metrics(part)
                rows += _rows(
                    "congestion",
                    name,
                    kind,
                    value,
                    sm,
                )
    return rows


# ---------------------------------------------------------------------------- together


def scoreboard(
    scores: pl.DataFrame,
    events: pl.DataFrame | None,
    kpis: pl.DataFrame,
    reference_kpis: pl.DataFrame,
    topology: pl.DataFrame | None,
    params: ModelParams,
    k: int = 20,
    features: pl.DataFrame | None = None,
    reference_features: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Both families, model next to baselines, overall, per anomaly type and per slice.

    `kpis` covers the scored rows plus a week before (seasonal baseline) and the forecast
    horizon after; `reference_kpis` is what the z-score baseline learns each cell from. With
    feature rows for the scored window and a reference period, the IsolationForest baseline
    is judged too. Without `events` (no labels) there are no anomaly rows: anomaly truth is
    labelled, congestion truth is the rule on the KPIs. A family that scored none of the rows
    has no rows either."""
    rows: list[dict[str, object]] = []
    published = _published(scores, "anomaly") if events is not None else {}
    if published:
        cols = ("cell_id", "ts", "anomaly_score", "is_anomaly")
        detectors = {n: d.select(cols).sort("cell_id", "ts") for n, d in published.items()}
        keys = pl.concat([d.select("cell_id", "ts") for d in detectors.values()])
        window_kpis = kpis.join(keys, on=["cell_id", "ts"], how="semi")
        reference, window = _derived(reference_kpis, params), _derived(window_kpis, params)
        detectors["zscore"] = zscore_detector(reference, window, params)
        detectors["hour_zscore"] = zscore_detector(reference, window, params, by_hour=True)
        if features is not None and reference_features is not None and reference_features.height:
            window_features = features.join(keys, on=["cell_id", "ts"], how="semi")
            detectors["iforest"] = isolation_forest(reference_features, window_features, params)
        assert events is not None
        rows += anomaly_board(detectors, events, topology, params, k)
    if _published(scores, "congestion"):
        rows += congestion_board(scores, kpis, topology, params)
    schema = {c: pl.String for c in COLUMNS[:-1]} | {"value": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def flat_metrics(board: pl.DataFrame) -> dict[str, float]:
    """Stable metric names for MLflow: scoreboard.<family>.<detector>.<metric>[.<slice>]."""
    out = {}
    for r in board.iter_rows(named=True):
        name = f"scoreboard.{r['family']}.{r['detector']}.{r['metric']}"
        if r["slice_kind"] != "all":
            name += f".{r['slice_kind']}.{r['slice']}"
        if r["value"] == r["value"]:  # NaN is not a metric value
            out[name] = r["value"]
    return out


def headline(board: pl.DataFrame, family: str) -> dict[str, float]:
    """A family's headline metrics from its board: the model's overall figures and the
    best baseline's PR-AUC, as `eval_<metric>`; the same names for every evaluation of the
    family (NaN where the board lacks a figure), so evaluation runs compare column for
    column. The full board stays a table."""
    overall = board.filter((pl.col("family") == family) & (pl.col("slice_kind") == "all"))
    model = {
        ("precision_at_k" if m.startswith("precision_at_") and m[13:].isdigit() else m): v
        for m, v in overall.filter(pl.col("detector") == "model")
        .select("metric", "value")
        .iter_rows()
    }
    out = {f"eval_{name}": float(model.get(name, float("nan"))) for name in HEADLINE[family]}
    baselines = overall.filter((pl.col("detector") != "model") & (pl.col("metric") == "pr_auc"))
    values = baselines["value"].drop_nans()
    out["eval_best_baseline_pr_auc"] = float(values.max()) if len(values) else float("nan")  # type: ignore[arg-type]
    return out
