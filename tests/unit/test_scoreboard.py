from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from cellpulse.models.evaluation import detection_metrics, found_events
from cellpulse.models.params import ModelParams
from cellpulse.models.scoreboard import (
    HEADLINE,
    anomaly_board,
    congestion_board,
    flat_metrics,
    headline,
    scoreboard,
)
from tests.conftest import tiny_settings

T0 = datetime(2026, 1, 5, tzinfo=UTC)
ROP = timedelta(minutes=15)


def flagged(patterns: dict[str, str]) -> pl.DataFrame:
    rows = [
        {
            "cell_id": c,
            "ts": T0 + i * ROP,
            "anomaly_score": 9.0 if ch == "A" else 1.0,
            "is_anomaly": ch == "A",
        }
        for c, p in patterns.items()
        for i, ch in enumerate(p)
    ]
    return pl.DataFrame(rows)


def events(*spec: tuple[str, str, str, int, int]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"cell_id": c, "type": t, "kind": k, "start": T0 + a * ROP, "end": T0 + b * ROP}
            for c, t, k, a, b in spec
        ]
    )


def test_an_event_is_found_by_a_flagged_rop_inside_it_with_its_delay():
    ev = events(("a", "outage", "fault", 4, 12), ("b", "outage", "fault", 0, 4))
    found = found_events(flagged({"a": "......AA........", "b": "....AA.........."}), ev, 15)
    assert found["found"].to_list() == [True, False]  # b's flags come after its event ended
    assert found["delay_rops"].to_list() == [2.0, None]


def test_alert_precision_and_false_alarms_follow_their_definitions(tmp_path):
    settings = tiny_settings(tmp_path)
    scores = flagged(
        {
            "a": "....AAA.........",  # overlaps a fault: a true alert
            "b": "..AA............",  # overlaps a surge: not a fault, not a false alarm either
            "c": "..........AA....",  # overlaps nothing: a false alarm
            "d": "................",
        }
    )
    ev = events(
        ("a", "outage", "fault", 4, 8),
        ("b", "surge", "load", 0, 6),
        ("d", "sleeping_cell", "fault", 2, 10),
    )
    m = detection_metrics(scores, ev, settings.rop_minutes, settings.alerts.clear_after_rops, k=1)
    assert m["events"] == 2 and m["event_recall"] == 0.5
    assert m["alerts"] == 3 and m["alert_precision"] == pytest.approx(1 / 3)
    cell_days = 4 * 16 * 15 / 1440
    assert m["false_alarms_per_100_cell_days"] == pytest.approx(100 / cell_days)
    assert m["median_detection_delay_rops"] == 0.0


def test_detectors_are_compared_at_the_same_false_alarm_budget(tmp_path):
    """`loud` finds both faults at its own threshold but alerts most on a healthy cell;
    `quiet` finds one fault and nothing else. At its own threshold loud recalls more; at
    the budget (no false alarm affordable on 2/3 of a cell-day) it must stay silent above
    its false alarm, and quiet wins."""
    params = ModelParams.of(tiny_settings(tmp_path))
    ev = events(("a", "outage", "fault", 4, 10), ("b", "sleeping_cell", "fault", 4, 10))

    def detector(scores: dict[str, list[float]], threshold: float) -> pl.DataFrame:
        rows = [
            {"cell_id": c, "ts": T0 + i * ROP, "anomaly_score": v, "is_anomaly": v > threshold}
            for c, values in scores.items()
            for i, v in enumerate(values)
        ]
        return pl.DataFrame(rows)

    quiet_rop, hit, miss = [1.0] * 16, [1.0] * 4 + [6.0] * 6 + [1.0] * 6, [1.0] * 16
    loud = detector({"a": hit, "b": hit, "c": [1.0] * 8 + [9.5] * 4 + [1.0] * 4}, 5.0)
    quiet = detector({"a": hit, "b": miss, "c": quiet_rop}, 5.0)
    board = pl.DataFrame(anomaly_board({"loud": loud, "quiet": quiet}, ev, None, params, k=1))

    def value(detector: str, metric: str, kind: str = "all", slice_: str = "all") -> float:
        return board.filter(
            (pl.col("detector") == detector)
            & (pl.col("metric") == metric)
            & (pl.col("slice_kind") == kind)
            & (pl.col("slice") == slice_)
        )["value"].item()

    assert value("loud", "event_recall") == 1.0 and value("quiet", "event_recall") == 0.5
    assert value("loud", "false_alarms_per_100_cell_days") == pytest.approx(100 / (3 * 16 / 96))
    assert value("loud", "recall_at_budget") == 0.0
    assert value("quiet", "recall_at_budget") == 0.5
    for name in ("loud", "quiet"):
        assert value(name, "false_alarms_per_100_cell_days_at_budget") == 0.0
    assert value("loud", "threshold_at_budget") == 9.5  # flags are scores above it
    assert value("quiet", "recall_at_budget", "type", "outage") == 1.0
    assert value("quiet", "recall_at_budget", "type", "sleeping_cell") == 0.0
    assert value("quiet", "median_detection_delay_rops_at_budget") == 2.0  # third ROP alerts


def test_a_perfect_congestion_forecast_beats_every_baseline(tiny_network, tmp_path):
    from cellpulse.features.targets import congestion_flags, congestion_target

    settings = tiny_settings(tmp_path)
    kpis = tiny_network[2]
    target = congestion_target(congestion_flags(kpis, settings.congestion, 15), 60, 15)
    scores = target.select(
        "cell_id",
        "ts",
        pl.col("congested_within").fill_null(False).cast(pl.Float64).alias("congestion_prob"),
    )
    scores = scores.filter(pl.col("ts") >= T0 + timedelta(days=7))
    board = pl.DataFrame(congestion_board(scores, kpis, None, ModelParams.of(settings)))
    model = {
        r["metric"]: r["value"]
        for r in board.filter(pl.col("detector") == "model").iter_rows(named=True)
    }
    assert model["positives"] > 0
    assert model["pr_auc"] == pytest.approx(1.0) and model["brier"] == 0.0
    assert model["lift_over_persistence"] >= 1.0
    # Current PRB utilisation as the probability is on the board, and the model beats it.
    prb = {
        r["metric"]: r["value"]
        for r in board.filter(pl.col("detector") == "prb_util").iter_rows(named=True)
    }
    assert prb["rows"] == model["rows"] and 0 < prb["pr_auc"] < 1.0
    assert model["lift_over_prb_util"] == pytest.approx(1.0 / prb["pr_auc"])


def test_board_has_types_slices_and_stable_flat_names(tiny_network, tmp_path):
    topo, ev, kpis = tiny_network
    settings = tiny_settings(tmp_path)
    window = kpis.filter(pl.col("ts") >= T0 + timedelta(days=7))
    outage = ev.row(0, named=True)
    scores = (
        window.select("cell_id", "ts")
        .with_columns(
            (
                (pl.col("cell_id") == outage["cell_id"])
                & (pl.col("ts") >= outage["start"])
                & (pl.col("ts") < outage["end"])
            ).alias("is_anomaly"),
            pl.lit(0.1).alias("congestion_prob"),
        )
        .with_columns(pl.col("is_anomaly").cast(pl.Float64).alias("anomaly_score"))
    )
    board = scoreboard(
        scores,
        ev,
        kpis,
        kpis.filter(pl.col("ts") < T0 + timedelta(days=7)),
        topo.frame(),
        ModelParams.of(settings),
        k=3,
    )
    assert set(board["detector"]) == {
        "model",
        "zscore",
        "hour_zscore",
        "persistence",
        "seasonal",
        "prb_util",
    }
    assert set(board["slice_kind"]) == {"all", "type", "area_type", "band", "region"}
    names = flat_metrics(board)
    assert names["scoreboard.anomaly.model.event_recall"] == 1.0
    assert names["scoreboard.anomaly.model.event_recall.type.outage"] == 1.0
    assert names["scoreboard.anomaly.model.recall_at_budget"] == 1.0
    assert names["scoreboard.anomaly.model.recall_at_budget.type.outage"] == 1.0
    assert "scoreboard.anomaly.hour_zscore.recall_at_budget" in names
    assert "scoreboard.congestion.model.lift_over_prb_util" in names
    assert "scoreboard.anomaly.model.precision_at_3" in names
    assert any(n.startswith("scoreboard.congestion.model.pr_auc.band.") for n in names)
    # An evaluation run gets a few headline figures per family, named the same for any k.
    anomaly = headline(board, "anomaly")
    assert set(anomaly) == {f"eval_{m}" for m in HEADLINE["anomaly"]} | {
        "eval_best_baseline_pr_auc"
    }
    assert anomaly["eval_event_recall"] == 1.0
    assert anomaly["eval_precision_at_k"] == names["scoreboard.anomaly.model.precision_at_3"]
    assert anomaly["eval_recall_at_budget"] == names["scoreboard.anomaly.model.recall_at_budget"]
    baselines = ("zscore", "hour_zscore", "isolation_forest")
    baseline_pr_aucs = [
        names.get(f"scoreboard.anomaly.{b}.pr_auc", float("nan")) for b in baselines
    ]
    assert anomaly["eval_best_baseline_pr_auc"] == max(v for v in baseline_pr_aucs if v == v)
    congestion = headline(board, "congestion")
    assert len(congestion) == len(HEADLINE["congestion"]) + 1 <= 10
    assert congestion["eval_pr_auc"] == names["scoreboard.congestion.model.pr_auc"]


def test_an_alert_people_marked_a_false_alarm_counts_as_one(tmp_path):
    """An operator's false_alarm verdict is a labelled period, but not an event: an alert
    over it is a false alarm, not an alert that met something real."""
    settings = tiny_settings(tmp_path)
    scores = flagged({"a": "....AAA.........", "b": "..AA............"})
    ev = events(("a", "outage", "fault", 4, 8), ("b", "verdict", "false_alarm", 2, 4))
    m = detection_metrics(scores, ev, settings.rop_minutes, settings.alerts.clear_after_rops, k=1)
    cell_days = 2 * 16 * 15 / 1440
    assert m["alerts"] == 2 and m["alert_precision"] == 0.5
    assert m["false_alarms_per_100_cell_days"] == pytest.approx(100 / cell_days)


def _scored(kpis: pl.DataFrame, settings, model_from: datetime) -> pl.DataFrame:
    """Scores of the second week: a perfect congestion forecast; rows before `model_from`
    scored by the baselines, the rest by champions (version 3, run r3)."""
    from cellpulse.features.targets import congestion_flags, congestion_target

    target = congestion_target(congestion_flags(kpis, settings.congestion, 15), 60, 15)
    by_model = pl.col("ts") >= model_from
    return (
        target.filter(pl.col("ts") >= T0 + timedelta(days=7))
        .select(
            "cell_id",
            "ts",
            pl.col("congested_within").fill_null(False).cast(pl.Float64).alias("congestion_prob"),
        )
        .with_columns(
            pl.lit(0.0).alias("anomaly_score"),
            pl.lit(False).alias("is_anomaly"),
            pl.when(by_model)
            .then(pl.lit("cellpulse-anomaly"))
            .otherwise(pl.lit("baseline:zscore"))
            .alias("anomaly_model"),
            pl.when(by_model)
            .then(pl.lit("cellpulse-congestion"))
            .otherwise(pl.lit("baseline:prb_util"))
            .alias("congestion_model"),
            *(
                pl.when(by_model)
                .then(pl.lit("3"))
                .otherwise(pl.lit("baseline"))
                .alias(f"{f}_model_version")
                for f in ("anomaly", "congestion")
            ),
            *(
                pl.when(by_model).then(pl.lit("r3")).otherwise(pl.lit("")).alias(f"{f}_run_id")
                for f in ("anomaly", "congestion")
            ),
        )
    )


def test_congestion_is_judged_without_labels_and_anomaly_has_no_rows(tiny_network, tmp_path):
    """Congestion truth is the rule on the KPIs: no event labels are needed for it."""
    topo, _, kpis = tiny_network
    settings = tiny_settings(tmp_path)
    scores = _scored(kpis, settings, T0 + timedelta(days=100))  # all baseline-scored
    board = scoreboard(scores, None, kpis, kpis, topo.frame(), ModelParams.of(settings), k=3)
    assert set(board["family"]) == {"congestion"}
    overall = board.filter(pl.col("slice_kind") == "all")
    assert set(overall["detector"]) == {"baseline:prb_util", "persistence", "seasonal", "prb_util"}


def test_rows_scored_by_a_baseline_are_judged_as_the_baseline_not_the_model(tiny_network, tmp_path):
    from cellpulse.models.scoreboard import scored_by

    _, ev, kpis = tiny_network
    settings = tiny_settings(tmp_path)
    switch = T0 + timedelta(days=8)
    scores = _scored(kpis, settings, switch)
    board = scoreboard(scores, ev, kpis, kpis, None, ModelParams.of(settings), k=3)
    overall = board.filter(pl.col("slice_kind") == "all")

    def rows_of(family: str, detector: str) -> float:
        metric = "rows" if family == "congestion" else "alerts"
        sel = overall.filter(
            (pl.col("family") == family)
            & (pl.col("detector") == detector)
            & (pl.col("metric") == metric)
        )
        return sel["value"].item()

    assert {"model", "baseline:zscore", "zscore"} <= set(
        overall.filter(pl.col("family") == "anomaly")["detector"]
    )
    # the congestion model is counted on the rows it scored only (those whose target is known)
    model_rows = rows_of("congestion", "model")
    base_rows = rows_of("congestion", "baseline:prb_util")
    assert model_rows + base_rows == rows_of("congestion", "persistence")
    assert 0 < model_rows <= scores.filter(pl.col("ts") >= switch).height
    assert 0 < base_rows <= scores.filter(pl.col("ts") < switch).height
    who = scored_by(scores, ["anomaly", "congestion"])
    assert set(who.filter(pl.col("family") == "congestion").rows()) == {
        (
            "congestion",
            "baseline:prb_util",
            "baseline",
            scores.filter(pl.col("ts") < switch).height,
        ),
        ("congestion", "cellpulse-congestion", "3", scores.filter(pl.col("ts") >= switch).height),
    }


def test_default_window_without_any_champion_is_every_scored_day_saying_so():
    from datetime import date

    from cellpulse.window import DayWindow, evaluation_window

    days = [date(2026, 1, d) for d in range(1, 11)]
    window, note = evaluation_window(days, DayWindow(), None)
    assert window == DayWindow(days[0], days[-1]) and "no champion yet" in note
    window, note = evaluation_window(days, DayWindow(), DayWindow(days[0], days[5]), "congestion")
    assert window == DayWindow(days[6], days[-1])
    assert "congestion champion's training window" in note
