"""The headline metrics of an evaluation: a module of its own, so the CLI names them without
loading the models."""

from __future__ import annotations

# The few figures of a family that sum up an evaluation, under names that never change (the
# scoreboard's precision@k is named by its k; here it is `precision_at_k`).
HEADLINE = {
    "anomaly": (
        "events",
        "event_recall",
        "alert_precision",
        "false_alarms_per_100_cell_days",
        "median_detection_delay_rops",
        "pr_auc",
        "precision_at_k",
        "recall_at_budget",
    ),
    "congestion": (
        "rows",
        "positives",
        "pr_auc",
        "brier",
        "precision",
        "recall",
        "lift_over_persistence",
        "lift_over_seasonal",
        "lift_over_prb_util",
    ),
}
