"""The scoreboard: how published scores measure up against ground truth, next to baselines,
per anomaly type and per slice (area type, band, region).

A long table, one row per (family, detector, slice_kind, slice, metric, value), so the same
metric names come out every time and any view is a pivot of it. The anomaly metrics are
`models.evaluation.detection_metrics`, defined there once for training and the scoreboard.
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
from cellpulse.settings import Settings

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


# ---------------------------------------------------------------------------- anomaly


def _derived(kpis: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """Contract KPIs with the derived ones the z-score baseline watches (ratios, rates),
    sorted by (cell_id, ts)."""
    return with_derived_kpis(kpis, settings.min_denominator, settings.rop_minutes).sort(
        "cell_id", "ts"
    )


def anomaly_board(
    detectors: dict[str, pl.DataFrame],
    events: pl.DataFrame,
    topology: pl.DataFrame | None,
    settings: Settings,
    k: int,
) -> list[dict[str, object]]:
    """Board rows of each anomaly detector: overall, per fault type (recall and delay), and
    per slice of the topology."""

    def metrics(
        flagged: pl.DataFrame, labelled: pl.DataFrame, ranking: bool = True
    ) -> dict[str, float]:
        return evaluation.detection_metrics(
            flagged, labelled, settings.rop_minutes, settings.alerts.clear_after_rops, k, ranking
        )

    rows: list[dict[str, object]] = []
    for name, flagged in detectors.items():
        lo, hi = cast(datetime, flagged["ts"].min()), cast(datetime, flagged["ts"].max())
        in_window = evaluation.events_in(events, lo, hi)
        rows += _rows("anomaly", name, "all", "all", metrics(flagged, in_window))
        for kind in sorted(set(in_window.filter(pl.col("kind") == "fault")["type"])):
            typed = in_window.filter((pl.col("type") == kind) | (pl.col("kind") == "load"))
            m = metrics(flagged, typed, ranking=False)
            rows += _rows(
                "anomaly",
                name,
                "type",
                kind,
                {x: m[x] for x in ("events", "event_recall", "median_detection_delay_rops")},
            )
        if topology is not None:
            for kind_name, part, part_events in _slices(flagged, in_window, topology):
                m = metrics(part, part_events)
                rows += _rows("anomaly", name, kind_name[0], kind_name[1], m)
    return rows


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
    scores: pl.DataFrame, kpis: pl.DataFrame, settings: Settings
) -> dict[str, pl.DataFrame]:
    """Each detector's score on the scored rows whose target is known."""
    labels = congestion_labels(
        scores, kpis, settings.congestion, settings.rop_minutes, settings.timezone
    )
    joined = (
        scores.select("cell_id", "ts", "congestion_prob")
        .join(labels, on=["cell_id", "ts"], how="left")
        .join(kpis.select("cell_id", "ts", "prb_util_dl_pct"), on=["cell_id", "ts"], how="left")
        .filter(pl.col("congested_within").is_not_null())
    )
    detectors = {
        "model": pl.col("congestion_prob"),
        "persistence": pl.col("persistence").fill_null(False).cast(pl.Float64),
        "seasonal": pl.col("seasonal").cast(pl.Float64),
        "threshold": pl.col("prb_util_dl_pct").fill_null(0) / 100,
    }
    return {
        name: joined.select("cell_id", "ts", "congested_within", expr.alias("score"))
        for name, expr in detectors.items()
    }


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
    scores: pl.DataFrame, kpis: pl.DataFrame, topology: pl.DataFrame | None, settings: Settings
) -> list[dict[str, object]]:
    """Board rows of the congestion model and its baselines, overall (with the model's lift
    over each naive guess) and per slice of the topology."""
    detectors = congestion_detectors(scores, kpis, settings)
    rows: list[dict[str, object]] = []
    metrics = {name: congestion_metrics(df) for name, df in detectors.items()}
    for name, m in metrics.items():
        if name == "model":
            for base in ("persistence", "seasonal"):
                ref = metrics[base]["pr_auc"]
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
    events: pl.DataFrame,
    kpis: pl.DataFrame,
    reference_kpis: pl.DataFrame,
    topology: pl.DataFrame | None,
    settings: Settings,
    k: int = 20,
    features: pl.DataFrame | None = None,
    reference_features: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Both families, model next to baselines, overall, per anomaly type and per slice.

    `kpis` covers the scored rows plus a week before (seasonal baseline) and the forecast
    horizon after; `reference_kpis` is what the z-score baseline learns each cell from. With
    feature rows for the scored window and a reference period, the IsolationForest baseline
    is judged too."""
    model = scores.select("cell_id", "ts", "anomaly_score", "is_anomaly").sort("cell_id", "ts")
    keys = model.select("cell_id", "ts")
    window_kpis = kpis.join(keys, on=["cell_id", "ts"], how="semi")
    detectors = {
        "model": model,
        "zscore": zscore_detector(
            _derived(reference_kpis, settings), _derived(window_kpis, settings), settings
        ),
    }
    if features is not None and reference_features is not None and reference_features.height:
        window_features = features.join(keys, on=["cell_id", "ts"], how="semi")
        detectors["iforest"] = isolation_forest(reference_features, window_features, settings)
    rows = anomaly_board(detectors, events, topology, settings, k)
    rows += congestion_board(scores, kpis, topology, settings)
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
