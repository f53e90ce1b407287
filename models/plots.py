"""Figures logged with each training run (matplotlib, no display needed)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
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


def calibration(y: np.ndarray, probs: dict[str, np.ndarray], title: str) -> Figure:
    """Reliability diagram: mean predicted probability against the observed rate, in bins
    of equal size; a calibrated model follows the diagonal."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfectly calibrated")
    y = np.asarray(y).astype(int)
    for name, p in probs.items():
        p = np.asarray(p, dtype=float)
        if y.any() and (1 - y).any():
            observed, predicted = calibration_curve(y, p, n_bins=10, strategy="quantile")
            ax.plot(predicted, observed, marker="o", label=name)
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title=title)
    ax.set(xlim=(0, 1), ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
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
