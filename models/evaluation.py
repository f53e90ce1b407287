"""Metrics with stable names, so the MLflow compare view lines runs up."""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


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


def event_recall(scored: pl.DataFrame, events: pl.DataFrame, flag: str = "is_anomaly") -> float:
    """Share of labelled events that at least one flagged ROP of their cell overlaps."""
    window = scored.select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi")).row(0)
    inside = events.filter((pl.col("end") > window[0]) & (pl.col("start") <= window[1]))
    if inside.is_empty():
        return float("nan")
    hits = (
        inside.with_row_index("_ev")
        .join(scored.filter(pl.col(flag)).select("cell_id", "ts"), on="cell_id", how="inner")
        .filter((pl.col("ts") >= pl.col("start")) & (pl.col("ts") < pl.col("end")))
        .select("_ev")
        .n_unique()
    )
    return hits / inside.height


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


def false_alarms_per_100_cell_days(
    scored: pl.DataFrame, labels: pl.Series, rop_minutes: int, flag: str = "is_anomaly"
) -> float:
    """Flagged ROPs outside any event, counted as alert starts, per 100 cell-days."""
    df = scored.select("cell_id", "ts", flag).with_columns(labels.alias("_y")).sort("cell_id", "ts")
    false_flag = pl.col(flag) & ~pl.col("_y")
    starts = df.select(
        (false_flag & ~false_flag.shift(1).over("cell_id").fill_null(False)).sum()
    ).item()
    cell_days = df.height * rop_minutes / 1440
    return 100 * starts / cell_days if cell_days else float("nan")


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
