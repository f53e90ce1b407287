"""Metrics with stable names, so the MLflow compare view lines runs up: one definition of
each, used by training's hold-out evaluation and by the scoreboard alike.

Detection (anomaly), for flagged ROPs (`cell_id, ts, anomaly_score, is_anomaly`) against
labelled events (`cell_id, start, end[, kind]`, end exclusive; without `kind` every event is
a fault):
- an event is *found* if a flagged ROP of its cell falls inside it;
- *detection delay*: ROPs from the event's start to its first flagged ROP (found events);
- an *alert* is a run of flagged ROPs of one cell (gaps shorter than the clear rule bridged);
  its *precision* is the share of alerts that overlap a fault; a *false alarm* is an alert
  that overlaps no labelled event at all (a surge is a real event, not a false alarm; a
  period people marked `false_alarm` is no event);
- *precision@k*: each day, the share of the k cells with the highest peak score that had a
  fault that day, averaged over days.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from cellpulse.features.targets import SPAN_SCHEMA, event_labels
from cellpulse.publish import group_alerts
from cellpulse.rops import run_ids


def _clean(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(s)
    return y[ok].astype(int), s[ok]


def pr_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Average precision; NaN when the hold-out has no positives (nothing to find)."""
    y, s = _clean(np.asarray(y), np.asarray(score, dtype=float))
    return float(average_precision_score(y, s)) if y.any() else float("nan")


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    y, s = _clean(np.asarray(y), np.asarray(score, dtype=float))
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


def classification_metrics(
    prefix: str, y: np.ndarray, prob: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Ranking (PR-AUC, ROC-AUC), calibration (Brier) and the precision and recall of
    `prob >= threshold`, as `<prefix>_<metric>`."""
    y = np.asarray(y).astype(int)
    prob = np.asarray(prob, dtype=float)
    pred = prob >= threshold
    tp = int((pred & (y == 1)).sum())
    return {
        f"{prefix}_pr_auc": pr_auc(y, prob),
        f"{prefix}_roc_auc": roc_auc(y, prob),
        f"{prefix}_brier": float(brier_score_loss(y, np.clip(prob, 0, 1))),
        f"{prefix}_precision": tp / pred.sum() if pred.sum() else float("nan"),
        f"{prefix}_recall": tp / y.sum() if y.sum() else float("nan"),
        f"{prefix}_positive_rate": float(y.mean()) if len(y) else float("nan"),
    }


def precision_at_k(scored: pl.DataFrame, labels: pl.Series, score: str, k: int) -> float:
    """Mean over days of the share of that day's k highest-peaking cells that were in a true
    event that day: what an engineer gets from reading the top of the list each morning."""
    per_cell_day = (
        scored.select("cell_id", pl.col("ts").dt.date().alias("_day"), score)
        .with_columns(labels.alias("_y"))
        .group_by("_day", "cell_id")
        .agg(pl.col(score).max(), pl.col("_y").any())
    )
    top = per_cell_day.filter(pl.col(score).rank("ordinal", descending=True).over("_day") <= k)
    per_day = top.group_by("_day").agg(pl.col("_y").mean())
    return float(np.mean(per_day["_y"].to_numpy())) if per_day.height else float("nan")


def fault_events(events: pl.DataFrame | None) -> pl.DataFrame | None:
    """The faults among labelled events (all of them when there is no `kind` column);
    None when there are none."""
    if events is None or events.is_empty():
        return None
    return events.filter(pl.col("kind") == "fault") if "kind" in events.columns else events


def real_events(events: pl.DataFrame) -> pl.DataFrame:
    """Labelled events that happened: everything but people's false-alarm verdicts, which
    label a period where an alert met nothing."""
    return events.filter(pl.col("kind") != "false_alarm") if "kind" in events.columns else events


def events_in(events: pl.DataFrame, lo: datetime, hi: datetime) -> pl.DataFrame:
    """The events that overlap the ROPs from `lo` to `hi` (both included)."""
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


def alert_spans(flagged: pl.DataFrame, clear_after_rops: int, rop_minutes: int) -> pl.DataFrame:
    """Alerts as (cell_id, start, end) spans, end exclusive."""
    on = flagged.filter(pl.col("is_anomaly"))
    if on.is_empty():
        return pl.DataFrame(schema=SPAN_SCHEMA)
    rop = timedelta(minutes=rop_minutes)
    return (
        group_alerts(on, clear_after_rops, rop_minutes)
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
    rop_minutes: int,
    clear_after_rops: int,
    k: int,
    with_ranking: bool = True,
) -> dict[str, float]:
    """How well one detector's flagged and ranked ROPs find labelled events (definitions in
    the module docstring): the same names for the model and every baseline, in training's
    hold-out evaluation and on the scoreboard.

    Args:
        flagged: `cell_id, ts, anomaly_score, is_anomaly`, one row per ROP scored.
        events: the labelled events of the period (faults, and the loads that are not
            false alarms).
        k: how many cells a day precision@k reads.
        with_ranking: also `pr_auc` and `precision_at_<k>` (they need `anomaly_score`).
    """
    faults = fault_events(events)
    if faults is None:
        faults = events.clear()
    found = found_events(flagged, faults, rop_minutes)
    spans = alert_spans(flagged, clear_after_rops, rop_minutes)
    on_fault = _overlapping(spans, faults)
    on_any = _overlapping(spans, real_events(events))
    cell_days = flagged.height * rop_minutes / 1440
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
        out["pr_auc"] = pr_auc(y.to_numpy(), flagged["anomaly_score"].to_numpy())
        out[f"precision_at_{k}"] = precision_at_k(flagged, y, "anomaly_score", k)
    return out


def _share(flags: pl.Series) -> float:
    """Share of True values; NaN when there is nothing to count."""
    return float(flags.sum()) / flags.len() if flags.len() else float("nan")


def _median(values: pl.Series) -> float:
    return float(np.median(values.to_numpy())) if values.len() else float("nan")


SLICE_COLUMNS = ("region", "band", "rat")


def slice_metrics(dims: pl.DataFrame, y: np.ndarray, scores: dict[str, np.ndarray]) -> pl.DataFrame:
    """PR-AUC of each scorer within every value of each slice column (`dims` aligned with
    `y`): slice, value, rows, positives, then one column per scorer."""
    rows = []
    for column in (c for c in SLICE_COLUMNS if c in dims.columns):
        values = dims[column].to_numpy()
        for value in sorted(set(values.tolist()) - {None}):
            mask = values == value
            rows.append(
                {
                    "slice": column,
                    "value": str(value),
                    "rows": int(mask.sum()),
                    "positives": int(y[mask].sum()),
                    **{f"pr_auc_{name}": pr_auc(y[mask], s[mask]) for name, s in scores.items()},
                }
            )
    return pl.DataFrame(rows)


# ---------------------------------------------------------------------------- alarm budget


def alert_levels(scored: pl.DataFrame, consecutive_rops: int, rop_minutes: int) -> pl.Series:
    """Per ROP (rows sorted by cell_id, ts), the highest threshold at which the ROP would
    still be flagged under the consecutive-ROP rule: the lowest score of the last
    `consecutive_rops` ROPs in a row ending at it (-inf where fewer precede it without a
    gap, or a score is missing). A ROP is flagged at threshold t exactly when its level
    exceeds t, so one pass gives the alerts of every threshold."""
    score = pl.col("anomaly_score").cast(pl.Float64)
    score = pl.when(score.is_finite()).then(score).otherwise(float("-inf"))
    level = (
        score.rolling_min(window_size=consecutive_rops, min_samples=consecutive_rops)
        .over(run_ids(rop_minutes))
        .fill_null(float("-inf"))
    )
    return scored.select(level.alias("_level")).to_series()


def flagged_at(
    scored: pl.DataFrame, threshold: float, consecutive_rops: int, rop_minutes: int
) -> pl.DataFrame:
    """`scored` (rows sorted by cell_id, ts) with `is_anomaly` as the alert rule sets it at
    `threshold` (`alert_levels`): a detector re-flagged at another threshold, e.g. the one
    `threshold_at_budget` finds."""
    levels = alert_levels(scored, consecutive_rops, rop_minutes)
    return scored.with_columns((levels > threshold).alias("is_anomaly"))


def _at_threshold(scored: pl.DataFrame, levels: pl.Series, threshold: float) -> pl.DataFrame:
    """`scored` (cell_id, ts, anomaly_score) flagged as the alert rule would at `threshold`."""
    return scored.select("cell_id", "ts", "anomaly_score").with_columns(
        (levels > threshold).alias("is_anomaly")
    )


def _false_alarm_rate(
    flagged: pl.DataFrame, events: pl.DataFrame, rop_minutes: int, clear_after_rops: int
) -> float:
    """False alarms per 100 cell-days of `flagged` (as `detection_metrics` counts them)."""
    spans = alert_spans(flagged, clear_after_rops, rop_minutes)
    false = int((~_overlapping(spans, real_events(events))).sum())
    cell_days = flagged.height * rop_minutes / 1440
    return 100 * false / cell_days if cell_days else 0.0


def threshold_at_budget(
    scored: pl.DataFrame,
    events: pl.DataFrame,
    budget: float,
    rop_minutes: int,
    consecutive_rops: int,
    clear_after_rops: int,
) -> float:
    """The lowest alert threshold at which a detector raises at most `budget` false alarms
    per 100 cell-days, alerts as the pipeline raises them (`consecutive_rops` above the
    threshold, then alert spans; a false alarm overlaps no real event). Comparing
    detectors at the recall this threshold buys is comparing them at equal alarm rates.

    Flags are `level > threshold` (see `alert_levels`), so the candidates are the levels
    themselves; raising the threshold only removes flagged ROPs, and the search takes the
    false-alarm count as falling with it (a split alert can break that by one, rarely).
    Above the highest level nothing is flagged, so a threshold always exists.

    Args:
        scored: `cell_id, ts, anomaly_score`, one row per ROP scored.
        events: the labelled events of the scored period (`cell_id, start, end[, kind]`).
        budget: false alarms per 100 cell-days allowed.
    """
    scored = scored.sort("cell_id", "ts")
    levels = alert_levels(scored, consecutive_rops, rop_minutes)
    finite = levels.filter(levels.is_finite())
    if finite.is_empty():
        return float("inf")
    levels_sorted = np.unique(finite.to_numpy())  # ascending
    # Just below the lowest level every ROP that can alert does; at the highest, none.
    candidates = np.concatenate([[np.nextafter(levels_sorted[0], -np.inf)], levels_sorted])

    def within(i: int) -> bool:
        flagged = _at_threshold(scored, levels, float(candidates[i]))
        return _false_alarm_rate(flagged, events, rop_minutes, clear_after_rops) <= budget

    if within(0):
        return float(candidates[0])
    lo, hi = 0, len(candidates) - 1  # within(lo) is False, within(hi) is True (no flags)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if within(mid):
            hi = mid
        else:
            lo = mid
    return float(candidates[hi])


def recall_at_budget(
    scored: pl.DataFrame,
    events: pl.DataFrame,
    budget: float,
    rop_minutes: int,
    consecutive_rops: int,
    clear_after_rops: int,
) -> dict[str, float]:
    """A detector judged at the threshold that spends `budget` false alarms per 100
    cell-days (`threshold_at_budget`): `threshold`, and the event recall, alert precision,
    false-alarm rate and median detection delay of `detection_metrics` there."""
    scored = scored.sort("cell_id", "ts")
    threshold = threshold_at_budget(
        scored, events, budget, rop_minutes, consecutive_rops, clear_after_rops
    )
    levels = alert_levels(scored, consecutive_rops, rop_minutes)
    flagged = _at_threshold(scored, levels, threshold)
    metrics = detection_metrics(
        flagged, events, rop_minutes, clear_after_rops, k=1, with_ranking=False
    )
    return {"threshold": threshold} | metrics
