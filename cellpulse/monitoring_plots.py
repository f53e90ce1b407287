"""The drift report as a picture: per feature, its distribution in the champion's training
window beside the recent one, the most shifted first (matplotlib, no display needed).

A table of PSI values says that something moved; the picture says how (a level shift, a
wider spread, a counter stuck at zero), which decides whether to retrain or to fix a feed.
"""

from __future__ import annotations

import base64
import io
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from cellpulse.monitoring import Check

PANELS = 12  # features drawn: the most shifted ones; the rest are in the check's detail
BINS = 30


def drift_picture(
    reference: pl.DataFrame,
    recent: pl.DataFrame,
    psi: Check,
    threshold: float,
    panels: int = PANELS,
) -> bytes:
    """A PNG of the `panels` features with the highest PSI (from the `psi` check's detail),
    each a histogram of the training window's values and the recent ones on shared bins,
    titled with its PSI; shifted features (PSI above `threshold`) titled in red."""
    shown = [
        (str(name), float(value))
        for name, value in psi.detail.head(panels).iter_rows()
        if name in reference.columns and name in recent.columns
    ]
    cols = 3 if len(shown) > 4 else max(len(shown), 1)
    rows = max(math.ceil(len(shown) / cols), 1)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows + 0.6), squeeze=False)
    for ax in axes.flat[len(shown) :]:
        ax.axis("off")
    for ax, (name, value) in zip(axes.flat, shown, strict=False):
        before = _finite(reference[name])
        now = _finite(recent[name])
        both = np.concatenate([before, now])
        if both.size == 0:
            ax.set_title(f"{name}: no values", fontsize=9)
            continue
        lo, hi = np.quantile(both, [0.005, 0.995])
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, BINS + 1)
        for values, colour, label in (
            (before, "tab:blue", "training window"),
            (now, "tab:orange", "recent"),
        ):
            clipped = np.clip(values, edges[0], edges[-1])
            ax.hist(clipped, edges, density=True, alpha=0.5, color=colour, label=label)
        shifted = value > threshold
        ax.set_title(f"{name}\nPSI {value:.3f}", fontsize=9, color="red" if shifted else "black")
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    if shown:
        axes.flat[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"Feature drift: {psi.summary}", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)  # pyplot keeps every open figure alive
    return buffer.getvalue()


def _finite(column: pl.Series) -> np.ndarray:
    values = column.cast(pl.Float64).to_numpy()
    return values[np.isfinite(values)]


def drift_markdown(picture: bytes, psi: Check, artifact_uri: str, top: int = PANELS) -> str:
    """The drift picture for the Prefect UI: embedded (a data URI: the UI needs no access to
    the MLflow store), the `top` features by PSI as a table, and where the MLflow copy is."""
    encoded = base64.b64encode(picture).decode("ascii")
    lines = [
        "# cellpulse feature drift",
        "",
        psi.summary,
        "",
        f"![feature drift: training window vs recent](data:image/png;base64,{encoded})",
        "",
        "| feature | PSI |",
        "|---|---:|",
        *(f"| {name} | {value:.3f} |" for name, value in psi.detail.head(top).iter_rows()),
        "",
        f"MLflow artifact: `{artifact_uri}`",
    ]
    return "\n".join(lines) + "\n"
