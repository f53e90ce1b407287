"""The figures logged with runs: a reliability diagram with enough bins to read, and the
metric-per-fold / per-trial plot of backtest and tuning parents."""

from __future__ import annotations

import numpy as np

from cellpulse.models import plots


def stepped_probabilities(rows: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Predictions as an isotonic calibration gives them: a few dozen steps, most rows on
    the lowest; outcomes drawn at those rates."""
    rng = np.random.default_rng(seed)
    p = np.round(rng.beta(0.3, 6, rows), 2)
    return (rng.random(rows) < p).astype(int), p


def model_points(fig) -> int:
    line = next(ln for ln in fig.axes[0].lines if str(ln.get_label()).startswith("model"))
    return len(line.get_xdata())


def test_the_calibration_plot_has_ten_to_twenty_bins_by_data_size():
    assert plots.calibration_bins(300) == 10
    assert plots.calibration_bins(3_000) == 12
    assert plots.calibration_bins(50_000) == 20
    y, p = stepped_probabilities(4_000)
    # Quantile edges on stepped predictions coincide: ten requested, seven drawn before.
    assert model_points(plots.calibration(y, {"model": p}, "congestion")) == 16


def test_equal_count_bins_keep_ties_together_and_split_the_rest_evenly():
    _, p = stepped_probabilities(4_000)
    which = plots.equal_count_bins(p, 16)
    for value in np.unique(p):  # a step is never cut in two
        assert len(set(which[p == value])) == 1
    counts = np.bincount(which)
    assert len(counts) == 16
    assert counts[0] == (p == p.min()).sum()  # the big tie is one bin
    # A bin grows past its share only by a step that cannot be split.
    mixed = [b for b in range(16) if len(np.unique(p[which == b])) > 1]
    assert mixed and max(counts[mixed]) < 2 * np.median(counts)
    assert np.all(np.diff([p[which == b].mean() for b in range(16)]) > 0)


def test_a_per_fold_plot_draws_each_series_with_gaps_and_rings_the_chosen():
    series = {"model": [0.6, float("nan"), 0.7], "zscore": [0.4, 0.5, 0.45]}
    fig = plots.per_run(series, ["fold 1", "fold 2", "fold 3"], "val_pr_auc", "t", highlight=2)
    lines = {str(ln.get_label()): ln for ln in fig.axes[0].lines}
    assert set(lines) == {"model", "zscore", "chosen"}
    assert np.isnan(lines["model"].get_ydata()[1])
    assert list(lines["chosen"].get_xdata()) == [2]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["fold 1", "fold 2", "fold 3"]
