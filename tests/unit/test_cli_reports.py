"""The tables the commands print, built from small frames."""

import polars as pl

from cellpulse.cli.reports import anomaly_by_type, detector_columns

COLUMNS = ("family", "detector", "slice_kind", "slice", "metric", "value")


def board(rows: list[tuple[str, str, str, str, str, float]]) -> pl.DataFrame:
    schema = {c: pl.String for c in COLUMNS[:-1]} | {"value": pl.Float64}
    return pl.DataFrame(rows, schema=schema, orient="row")


BOARD = board(
    [
        ("anomaly", "model", "all", "all", "event_recall", 0.8),
        ("anomaly", "model", "type", "outage", "events", 4.0),
        ("anomaly", "model", "type", "outage", "event_recall", 0.75),
        ("anomaly", "model", "type", "outage", "median_detection_delay_rops", 2.0),
        ("anomaly", "zscore", "type", "outage", "event_recall", 0.5),
        ("anomaly", "model", "type", "sleeping", "events", 3.0),
        ("anomaly", "model", "type", "sleeping", "event_recall", 1 / 3),
        ("anomaly", "zscore", "type", "sleeping", "event_recall", 0.0),
        ("anomaly", "zscore", "type", "sleeping", "alerts", 9.0),
        ("congestion", "model", "type", "outage", "events", 99.0),
    ]
)


def test_anomaly_by_type_names_each_column_from_its_detector_and_metric():
    headers, rows = anomaly_by_type(BOARD)
    assert headers == [
        "type",
        "events",
        "recall (model)",
        "recall (zscore)",
        "median delay (ROPs, model)",
    ]
    # in the board's order; a type without a figure (sleeping's delay) gets None
    assert rows == [("outage", 4.0, 0.75, 0.5, 2.0), ("sleeping", 3.0, 1 / 3, 0.0, None)]


def test_anomaly_by_type_leaves_out_a_figure_no_type_has_and_reads_no_other_rows():
    without_delay = BOARD.filter(pl.col("metric") != "median_detection_delay_rops")
    headers, rows = anomaly_by_type(without_delay)
    assert headers == ["type", "events", "recall (model)", "recall (zscore)"]
    assert rows[0] == ("outage", 4.0, 0.75, 0.5)
    assert anomaly_by_type(BOARD.filter(pl.col("slice_kind") == "all")) == (["type"], [])


def test_detector_columns_put_each_detector_beside_the_others():
    two = board(
        [
            ("anomaly", "model", "all", "all", "pr_auc", 0.6),
            ("anomaly", "zscore", "all", "all", "pr_auc", 0.4),
            ("anomaly", "model", "all", "all", "events", 7.0),
            ("anomaly", "model", "type", "outage", "pr_auc", 0.9),
        ]
    )
    head, *rows = detector_columns(two, "anomaly", ["pr_auc", "events"])
    assert head == ["model", "zscore"]
    assert rows[0] == ["pr_auc", 0.6, 0.4]
    assert rows[1][:2] == ["events", 7.0] and rows[1][2] != rows[1][2]  # NaN: no figure


def test_the_score_scale_says_the_unit_the_alert_threshold_and_the_probability_range():
    from cellpulse.cli.reports import score_scale
    from cellpulse.settings import Settings

    settings = Settings(home="unused")
    line = score_scale(6.25, settings)
    assert "anomaly score: spreads of the cell's own KPIs at that hour" in line
    assert "anomalous at ≥ 6.2" in line and "after 3 in a row" in line
    assert "congestion: probability 0–1" in line and "next 60 minutes" in line
    assert "baseline's per-cell z-score" in score_scale(None, settings)
