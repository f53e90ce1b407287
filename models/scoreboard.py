"""The scoreboard: how published scores measure up against ground truth, next to baselines,
per anomaly type and per slice (area type, band, region).

A long table, one row per (family, detector, slice_kind, slice, metric, value), so the same
metric names come out every time and any view is a pivot of it.

Definitions (anomaly):
- an event is *found* if a flagged ROP (`is_anomaly`) of its cell falls inside it;
- *detection delay*: ROPs from the event's start to its first flagged ROP (found events);
- an *alert* is a run of flagged ROPs of one cell (gaps shorter than the clear rule bridged);
  its *precision* is the share of alerts that overlap a fault; a *false alarm* is an alert
  that overlaps no labelled event at all (a surge is a real event, not a false alarm);
- *precision@k*: each day, the share of the k cells with the highest peak score that had a
  fault that day, averaged over days.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import cast

import numpy as np
import polars as pl

from cellpulse.features.builder import with_derived_kpis
from cellpulse.features.targets import SPAN_SCHEMA, congestion_labels, event_labels
from cellpulse.models import evaluation
from cellpulse.models.anomaly import alert_flags, zscore_baseline
from cellpulse.models.baselines import isolation_forest
from cellpulse.publish import group_alerts
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


def _events_in(events: pl.DataFrame, lo: datetime, hi: datetime) -> pl.DataFrame:
    return events.filter((pl.col("end") > lo) & (pl.col("start") <= hi))


def found_events(flagged: pl.DataFrame, events: pl.DataFrame, rop_minutes: int) -> pl.DataFrame:
    """Each event with `found` and `delay_rops` (null when not found)."""
    hits = (
        events.with_row_index("_ev")
        .join(flagged.filter(pl.col("is_anomaly")).select("cell_id", "ts"), on="cell_id")
        .filter((pl.col("ts") >= pl.col("start")) & (pl.col("ts") < pl.col("end")))
        .group_by("_ev")
        .agg(pl.col("ts").min().alias("_first"))
    )
    rop = pl.duration(minutes=rop_minutes)
    return (
        events.with_row_index("_ev")
        .join(hits, on="_ev", how="left")
        .with_columns(
            pl.col("_first").is_not_null().alias("found"),
            ((pl.col("_first") - pl.col("start")) / rop).alias("delay_rops"),
        )
        .drop("_ev", "_first")
    )


def alert_spans(flagged: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """Alerts as (cell_id, start, end) spans, end exclusive."""
    on = flagged.filter(pl.col("is_anomaly"))
    if on.is_empty():
        return pl.DataFrame(schema=SPAN_SCHEMA)
    rop = timedelta(minutes=settings.rop_minutes)
    return (
        group_alerts(on, settings.alerts.clear_after_rops, settings.rop_minutes)
        .group_by("_alert", maintain_order=True)
        .agg(
            pl.col("cell_id").first(),
            pl.col("ts").min().alias("start"),
            (pl.col("ts").max() + rop).alias("end"),
        )
        .drop("_alert")
    )


def _overlapping(spans: pl.DataFrame, events: pl.DataFrame) -> pl.Series:
    """For each span, whether any event of its cell overlaps it."""
    if spans.is_empty() or events.is_empty():
        return pl.Series([False] * spans.height, dtype=pl.Boolean)
    hit = (
        spans.with_row_index("_a")
        .join(
            events.select("cell_id", pl.col("start").alias("es"), pl.col("end").alias("ee")),
            on="cell_id",
        )
        .filter((pl.col("start") < pl.col("ee")) & (pl.col("es") < pl.col("end")))
        .select("_a")
        .unique()
    )
    flags = np.zeros(spans.height, dtype=bool)
    flags[hit["_a"].to_numpy()] = True
    return pl.Series(flags)


def detection_metrics(
    flagged: pl.DataFrame,
    events: pl.DataFrame,
    settings: Settings,
    k: int,
    with_ranking: bool = True,
) -> dict[str, float]:
    """Metrics of one detector (`cell_id, ts, anomaly_score, is_anomaly`) on one slice."""
    faults = events.filter(pl.col("kind") == "fault")
    found = found_events(flagged, faults, settings.rop_minutes)
    spans = alert_spans(flagged, settings)
    on_fault = _overlapping(spans, faults)
    on_any = _overlapping(spans, events)
    cell_days = flagged.height * settings.rop_minutes / 1440
    out = {
        "events": float(found.height),
        "event_recall": _share(found["found"]),
        "median_detection_delay_rops": _median(found.filter("found")["delay_rops"]),
        "alerts": float(spans.height),
        "alert_precision": _share(on_fault),
        "false_alarms_per_100_cell_days": (
            100 * float((~on_any).sum()) / cell_days if cell_days else float("nan")
        ),
    }
    if with_ranking:
        y = event_labels(flagged, faults)
        out["pr_auc"] = evaluation.pr_auc(y.to_numpy(), flagged["anomaly_score"].to_numpy())
        out[f"precision_at_{k}"] = evaluation.precision_at_k(flagged, y, "anomaly_score", k)
    return out


def _share(flags: pl.Series) -> float:
    """Share of True values; NaN when there is nothing to count."""
    return float(flags.sum()) / flags.len() if flags.len() else float("nan")


def _median(values: pl.Series) -> float:
    return float(np.median(values.to_numpy())) if values.len() else float("nan")


def zscore_detector(
    window_kpis: pl.DataFrame, reference_kpis: pl.DataFrame, settings: Settings
) -> pl.DataFrame:
    """The per-cell z-score baseline (O-RAN SC AD xApp style) with the same alert rule."""

    def derive(df: pl.DataFrame) -> pl.DataFrame:
        return with_derived_kpis(df, settings.min_denominator, settings.rop_minutes).sort(
            "cell_id", "ts"
        )

    window = derive(window_kpis)
    z = zscore_baseline(derive(reference_kpis), window)
    scored = window.select("cell_id", "ts").with_columns(z.alias("anomaly_score"))
    flags = alert_flags(scored, 3.0, settings.alerts.consecutive_rops, settings.rop_minutes)
    return scored.with_columns(flags)


def anomaly_board(
    detectors: dict[str, pl.DataFrame],
    events: pl.DataFrame,
    topology: pl.DataFrame | None,
    settings: Settings,
    k: int,
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for name, flagged in detectors.items():
        lo, hi = cast(datetime, flagged["ts"].min()), cast(datetime, flagged["ts"].max())
        in_window = _events_in(events, lo, hi)
        rows += _rows(
            "anomaly", name, "all", "all", detection_metrics(flagged, in_window, settings, k)
        )
        for kind in sorted(set(in_window.filter(pl.col("kind") == "fault")["type"])):
            typed = in_window.filter((pl.col("type") == kind) | (pl.col("kind") == "load"))
            m = detection_metrics(flagged, typed, settings, k, with_ranking=False)
            rows += _rows(
                "anomaly",
                name,
                "type",
                kind,
                {x: m[x] for x in ("events", "event_recall", "median_detection_delay_rops")},
            )
        if topology is not None:
            for kind_name, part, part_events in _slices(flagged, in_window, topology):
                m = detection_metrics(part, part_events, settings, k)
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
    detectors = {"model": model, "zscore": zscore_detector(window_kpis, reference_kpis, settings)}
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
