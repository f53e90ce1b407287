"""Decisions the flows rely on, tested without Prefect or MLflow: which days
a backfill runs, which window an evaluation judges, which days monitoring compares, the
checks it runs, and the lines people read about a tuning search."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from cellpulse import monitoring
from cellpulse.backfill import check_stages, plan
from cellpulse.errors import NoDataError
from cellpulse.features.builder import build_features
from cellpulse.features.spec import default_spec
from cellpulse.features.store import load_events, load_labels
from cellpulse.models import backtest, tuning
from cellpulse.models.backtest import Fold
from cellpulse.settings import MonitorSettings
from cellpulse.window import DayWindow, evaluation_window
from tests.conftest import TINY

D = [TINY.start + timedelta(days=i) for i in range(9)]


# ----------------------------------------------------------------------------- backfill


def test_plan_runs_missing_and_stale_stages_and_scores_after_new_features():
    done = {"features": {D[0], D[1], D[2]}, "score": {D[0], D[2], D[3]}}
    stale = {"features": {D[2]}, "score": set()}
    todo = plan(D[:4], ("features", "score"), done, stale)
    assert todo == {
        D[0]: [],
        D[1]: ["score"],
        D[2]: ["features", "score"],  # new features make the day's scores stale
        D[3]: ["features", "score"],
    }
    assert plan(D[:1], ("score",), done, stale, force=True) == {D[0]: ["score"]}


def test_plan_skips_current_days_and_redoes_stale_scores_alone():
    done = {"features": set(D[:3]), "score": set(D[:3])}
    stale = {"features": set(), "score": {D[1]}}
    assert plan(D[:3], ("features", "score"), done, stale) == {
        D[0]: [],
        D[1]: ["score"],
        D[2]: [],
    }
    assert plan(D[:3], ("features",), done, stale) == {d: [] for d in D[:3]}


def test_a_backfill_names_the_stages_it_does_not_know():
    check_stages(("features", "score"))
    with pytest.raises(NoDataError, match=r"unknown stage\(s\) \['scores'\]"):
        check_stages(("features", "scores"))


# ----------------------------------------------------------------------------- evaluate


def test_evaluation_judges_the_days_scored_after_the_champions_training_window():
    trained = DayWindow(D[0], D[5])
    window, note = evaluation_window(D, DayWindow(), trained)
    assert window == DayWindow(D[6], D[8])
    assert note == f"days after the champion's training window ({D[5]})"


def test_evaluation_falls_back_to_every_scored_day_and_says_so():
    for trained in (None, DayWindow(D[0], D[8])):  # no champion; nothing scored after it
        window, note = evaluation_window(D, DayWindow(), trained)
        assert window == DayWindow(D[0], D[8]) and "optimistic" in note


def test_a_requested_evaluation_window_is_closed_on_the_scored_days():
    trained = DayWindow(D[0], D[5])
    assert evaluation_window(D, DayWindow(start=D[2]), trained) == (
        DayWindow(D[2], D[8]),
        "the requested days",
    )
    assert evaluation_window(D, DayWindow(end=D[3]), None)[0] == DayWindow(D[0], D[3])


def test_a_requested_window_past_the_scores_says_what_the_scores_cover():
    later = D[-1] + timedelta(days=3)
    with pytest.raises(NoDataError, match=f"no scores between {later} and {later}; data covers"):
        evaluation_window(D, DayWindow(start=later), None)


# ----------------------------------------------------------------------------- monitor


def test_monitoring_compares_the_newest_days_with_the_training_days_but_the_first():
    days = monitoring.monitor_days(D, D[2:], DayWindow(D[0], D[4]), recent_days=3)
    assert days.recent == D[6:]
    assert days.reference == D[1:5]  # the lake's first day has no history behind it
    assert days.score_reference == D[2:5]
    # Training days never scored: the earliest scored days stand in.
    later = monitoring.monitor_days(D, D[5:], DayWindow(D[0], D[4]), recent_days=2)
    assert later.score_reference == D[5:7]


def test_recent_days_are_never_part_of_the_reference_even_when_the_champion_trained_on_them():
    everything = DayWindow(D[0], D[-1])
    days = monitoring.monitor_days(D, D, everything, recent_days=3)
    assert days.recent == D[-3:]
    assert days.reference == D[1:-3]
    assert days.score_reference == D[:-3]
    assert not set(days.recent) & (set(days.reference) | set(days.score_reference))
    # A champion trained on the recent days alone leaves nothing to compare them with.
    with pytest.raises(NoDataError, match="no features left before the recent days"):
        monitoring.monitor_days(D, D, DayWindow(D[-3], D[-1]), recent_days=3)


def test_monitoring_says_why_it_cannot_compare():
    with pytest.raises(NoDataError, match="no features to monitor"):
        monitoring.monitor_days([], D, DayWindow(D[0], D[4]), 7)
    with pytest.raises(NoDataError, match="records no training window"):
        monitoring.monitor_days(D, D, None, 7)
    gone = DayWindow(D[0] - timedelta(days=30), D[0])
    with pytest.raises(NoDataError, match=f"training window {gone} has no features left"):
        monitoring.monitor_days(D, D, gone, 7)


def _scores(kpis: pl.DataFrame, flagged_cell: str | None) -> pl.DataFrame:
    return kpis.select(
        "cell_id",
        "ts",
        pl.lit(0.1).alias("anomaly_score"),
        pl.lit(0.2).alias("congestion_prob"),
        (pl.col("cell_id") == (flagged_cell or "")).alias("is_anomaly"),
    )


def test_checks_run_on_samples_and_judge_the_champion_on_labelled_faults(tiny_network):
    _, events, kpis = tiny_network
    spec = default_spec(TINY.rop_minutes)
    feats = build_features(kpis, spec, rop_minutes=TINY.rop_minutes, min_denominator=10)
    split = TINY.start + timedelta(days=6)
    day = pl.col("ts").dt.date()
    days = monitoring.MonitorDays(D[1:6], D[6:], D[1:6])

    def samples(flagged: str | None) -> monitoring.Samples:
        return monitoring.Samples(
            days,
            (feats.filter(day < split), feats.filter(day >= split)),
            (kpis.filter(day < split), kpis.filter(day >= split)),
            (
                _scores(kpis.filter(day < split), None),
                _scores(kpis.filter(day >= split), flagged),
            ),
        )

    cfg = MonitorSettings()
    columns = spec.network_columns()
    outage = events["cell_id"][0]
    found = monitoring.run_checks(samples(outage), columns, events, cfg)
    assert [c.name for c in found.checks] == [
        "psi",
        "counter_availability",
        "topology",
        "score_shift",
        "performance",
    ]
    assert found.reference == (str(D[1]), str(D[5])) and found.recent == (str(D[6]), str(D[8]))
    assert found.checks[-1].value == 1.0 and not found.checks[-1].breached
    missed = monitoring.run_checks(samples(None), columns, events, cfg)
    assert missed.checks[-1].value == 0.0 and missed.needs_retraining
    unlabelled = monitoring.run_checks(samples(None), columns, None, cfg)
    assert "performance" not in [c.name for c in unlabelled.checks]
    table = missed.markdown()
    assert "| performance | 0.000 | 0.5 | **yes** |" in table
    assert table.endswith("Retraining: **triggered**\n")


# ----------------------------------------------------------------------------- labels


def test_labels_always_carry_a_kind_and_files_are_read_together(tmp_path: Path):
    t0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
    plain = tmp_path / "plain.csv"
    pl.DataFrame({"cell_id": ["c1"], "start": [t0], "end": [t0 + timedelta(hours=1)]}).write_csv(
        plain
    )
    verdicts = tmp_path / "verdicts.parquet"
    pl.DataFrame(
        {
            "cell_id": ["c2"],
            "start": [t0],
            "end": [t0 + timedelta(hours=2)],
            "kind": ["false_alarm"],
            "type": ["outage"],
        }
    ).write_parquet(verdicts)
    events = load_events(plain)
    assert events is not None and events["kind"].to_list() == ["fault"]
    both = load_labels([plain, tmp_path / "missing.parquet", verdicts])
    assert both is not None
    assert both.columns == ["cell_id", "start", "end", "kind"]
    assert both.select("cell_id", "kind").rows() == [("c1", "fault"), ("c2", "false_alarm")]
    assert load_labels([tmp_path / "missing.parquet"]) is None


# ----------------------------------------------------------------------------- reports


def test_a_tuning_search_is_described_in_one_line():
    from types import SimpleNamespace

    from cellpulse.models.promotion import PromotionRule

    # Only what the description reads of a candidate: its rule, metrics and validation days.
    picked = SimpleNamespace(
        rule=PromotionRule("val_pr_auc"),
        metrics={"val_pr_auc": 0.8125},
        split=SimpleNamespace(holdout_days=(D[5], D[6])),
    )
    trials = [
        tuning.Trial(0, {"num_leaves": 31}, picked, 1.0),  # type: ignore[arg-type]
        tuning.Trial(1, {"num_leaves": 63}, picked, 1.0),  # type: ignore[arg-type]
    ]
    assert tuning.describe(trials[1], trials, "abc123") == (
        f"trial 1 of 2 won on the validation days {D[5]}..{D[6]} "
        "(val_pr_auc 0.8125; num_leaves=63); trials in MLflow run abc123"
    )


def test_a_backtest_report_lists_each_familys_metrics_and_skipped_folds():
    folds = {
        "anomaly": [
            Fold(1, (D[0], D[3]), (D[4], D[5]), {"val_event_recall": 0.5}),
            Fold(2, (D[0], D[5]), (D[6], D[7]), {"val_event_recall": 1.0}),
        ],
        "congestion": [Fold(1, (D[0], D[3]), (D[4], D[5]), skipped="no congestion yet")],
    }
    text = backtest.markdown(folds)
    assert "| val_event_recall | 0.7500 | 0.2500 | 2 |" in text
    assert "fold 1: no congestion yet" in text
    assert math.isclose(backtest.summarise(folds["anomaly"])["val_event_recall"][0], 0.75)


def test_day_windows_round_trip_as_flow_parameters():
    from pydantic import TypeAdapter

    # Prefect validates and stores flow parameters with pydantic: a deployment's JSON
    # parameters come back as the same window.
    adapter = TypeAdapter(DayWindow)
    window = DayWindow(date(2026, 1, 5), None)
    stored = adapter.dump_python(window, mode="json")
    assert stored == {"start": "2026-01-05", "end": None}
    assert adapter.validate_python(stored) == window
    with pytest.raises(NoDataError, match="swap them"):
        adapter.validate_python({"start": "2026-01-06", "end": "2026-01-05"})
