"""Figures logged with each training run (matplotlib, no display needed)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes; the figure is closed (pyplot keeps every open one alive)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def pr_curves(y: np.ndarray, scores: dict[str, np.ndarray], title: str) -> Figure:
    """Precision-recall curve of the model and each baseline on the same hold-out."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    y = np.asarray(y).astype(int)
    for name, s in scores.items():
        s = np.asarray(s, dtype=float)
        finite = s[np.isfinite(s)]
        # No score (e.g. no last week to copy) ranks below every real one.
        s = np.where(np.isfinite(s), s, (finite.min() - 1) if finite.size else 0.0)
        if y.any():
            p, r, _ = precision_recall_curve(y, s)
            ax.plot(r, p, label=name, lw=2 if name == "model" else 1)
    ax.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    if y.any():
        ax.legend(loc="upper right")
    else:
        ax.text(0.5, 0.5, "no positives in the hold-out", ha="center", va="center")
    fig.tight_layout()
    return fig


def calibration_bins(rows: int) -> int:
    """How many bins a reliability diagram of `rows` predictions gets: 10, rising to 20
    from 5,000 rows (250 rows a bin keep a point's observed rate within a few points)."""
    return int(np.clip(rows // 250, 10, 20))


def equal_count_bins(p: np.ndarray, bins: int) -> np.ndarray:
    """Each prediction's bin: bins of about equal row counts in order of probability, where
    equal values always share a bin. A calibrated model's probabilities come in steps (an
    isotonic map) and most rows sit on the lowest ones; plain quantile edges then coincide
    and leave a handful of points. Here a large tie is one bin and the rows above it are
    split again into the bins that are left."""
    values, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    labels = np.zeros(len(values), dtype=int)
    current, filled, left = 0, 0, p.size
    for i, count in enumerate(counts):
        labels[i] = current
        filled += count
        if current < bins - 1 and filled >= left / (bins - current):
            left -= filled
            filled, current = 0, current + 1
    return labels[inverse.ravel()]


def calibration(y: np.ndarray, probs: dict[str, np.ndarray], title: str) -> Figure:
    """Reliability diagram: mean predicted probability against the observed rate, in bins
    of about equal size (`calibration_bins`, `equal_count_bins`); a calibrated model follows
    the diagonal. Each point's size shows its rows."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfectly calibrated")
    y = np.asarray(y).astype(int)
    bins = calibration_bins(y.size)
    for name, p in probs.items():
        p = np.asarray(p, dtype=float)
        if y.any() and (1 - y).any():
            which = equal_count_bins(p, bins)
            rows = np.bincount(which)
            predicted = np.bincount(which, weights=p) / rows
            observed = np.bincount(which, weights=y) / rows
            line = ax.plot(predicted, observed, lw=1, label=f"{name} ({len(rows)} bins)")[0]
            ax.scatter(predicted, observed, s=12 + 60 * rows / rows.max(), color=line.get_color())
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title=title)
    ax.set(xlim=(0, 1), ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def per_run(
    series: dict[str, list[float]],
    labels: list[str],
    metric: str,
    title: str,
    highlight: int | None = None,
) -> Figure:
    """One metric across the folds of a backtest or the trials of a search: a line per
    series (the model, each baseline), gaps where a fold or trial has no value; the chosen
    one (`highlight`, an index into `labels`) ringed."""
    fig, ax = plt.subplots(figsize=(max(5.5, 0.6 * len(labels) + 2), 4))
    x = np.arange(len(labels))
    for name, values in series.items():
        y = np.asarray(values, dtype=float)
        ax.plot(x, y, marker="o", lw=2 if name == "model" else 1, label=name)
        if highlight is not None and name == "model" and np.isfinite(y[highlight]):
            ax.plot(x[highlight], y[highlight], "o", ms=14, mfc="none", mec="red", label="chosen")
    ax.set_xticks(
        x,
        labels,
        rotation=45 if len(labels) > 8 else 0,
        ha="right" if len(labels) > 8 else "center",
    )
    ax.set(ylabel=metric, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def importance(pairs: list[tuple[str, float]], title: str) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(pairs) + 1))
    names = [n for n, _ in pairs][::-1]
    vals = [v for _, v in pairs][::-1]
    ax.barh(names, vals, color="#3b6ea8")
    ax.set(xlabel="gain", title=title)
    fig.tight_layout()
    return fig


def residual_hist(z: pl.DataFrame, title: str) -> Figure:
    """Distribution of the standardised bad-direction residual of each watched KPI."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bins = np.linspace(0, 15, 61).tolist()
    for name in z.columns:
        vals = z[name].to_numpy()
        ax.hist(np.clip(vals[vals > 0], 0, 15), bins=bins, histtype="step", label=name)
    ax.set(
        yscale="log", xlabel="robust z (bad direction, capped at 15)", ylabel="ROPs", title=title
    )
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def worst_cells(
    scored: pl.DataFrame, events: pl.DataFrame, threshold: float, cells: int = 4
) -> Figure:
    """Anomaly score over time for the cells with the highest peak, true events shaded."""
    worst = (
        scored.group_by("cell_id")
        .agg(pl.col("anomaly_score").max())
        .sort("anomaly_score", descending=True)
        .head(cells)["cell_id"]
        .to_list()
    )
    fig, axes = plt.subplots(
        len(worst) or 1, 1, figsize=(9, 1.9 * max(len(worst), 1)), sharex=True, squeeze=False
    )
    for ax, cell in zip(axes[:, 0], worst, strict=False):
        one = scored.filter(pl.col("cell_id") == cell).sort("ts")
        ax.plot(one["ts"].to_list(), one["anomaly_score"].to_numpy(), lw=1)
        ax.axhline(threshold, color="red", ls="--", lw=0.8)
        for ev in events.filter(pl.col("cell_id") == cell).iter_rows(named=True):
            load = ev.get("kind") == "load"  # surges: not faults, but ops will see them
            ax.axvspan(ev["start"], ev["end"], color="grey" if load else "orange", alpha=0.3)
            ax.text(ev["start"], ax.get_ylim()[1] * 0.85, ev["type"], fontsize=7)
        ax.set_ylabel(cell, fontsize=7)
    axes[0, 0].set_title("anomaly score, worst cells (orange: labelled faults, grey: surges)")
    fig.tight_layout()
    return fig


def slice_table(table: pl.DataFrame, title: str) -> Figure:
    """A table of per-slice hold-out metrics (one row per region / band / ...)."""
    shown = table.with_columns(pl.col(c).round(3) for c, t in table.schema.items() if t.is_float())
    rows = [["–" if v is None else str(v) for v in row] for row in shown.iter_rows()]
    fig, ax = plt.subplots(figsize=(8, 0.32 * (len(rows) + 1) + 0.9))
    ax.axis("off")
    grid = ax.table(cellText=rows or [["–"] * table.width], colLabels=table.columns, loc="center")
    grid.auto_set_font_size(False)
    grid.set_fontsize(8)
    grid.scale(1, 1.25)
    ax.set_title(title)
    fig.tight_layout()
    return fig
