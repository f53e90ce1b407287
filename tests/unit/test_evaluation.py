from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from cellpulse.models.anomaly import alert_flags
from cellpulse.models.evaluation import alert_levels, recall_at_budget, threshold_at_budget

T0 = datetime(2026, 1, 5, tzinfo=UTC)
ROP = timedelta(minutes=15)
DAY = 96  # ROPs of a day at 15 minutes
RULE = {"rop_minutes": 15, "consecutive_rops": 3, "clear_after_rops": 4}


def detector(spikes: dict[str, list[tuple[int, int, float]]]) -> pl.DataFrame:
    """One day per cell, score 1.0 except the (first ROP, last ROP exclusive, score) spikes."""
    rows = []
    for cell, parts in spikes.items():
        score = np.ones(DAY)
        for a, b, s in parts:
            score[a:b] = s
        rows += [
            {"cell_id": cell, "ts": T0 + i * ROP, "anomaly_score": score[i]} for i in range(DAY)
        ]
    return pl.DataFrame(rows)


# Cell a: a fault scored 6 for 11 ROPs. Cell b: a false spike of 8, cell c: one of 5, each
# 3 ROPs long (an alert); c also spikes to 9 for 2 ROPs (too short to alert). d is quiet.
SCORES = detector(
    {
        "a": [(40, 51, 6.0)],
        "b": [(10, 13, 8.0)],
        "c": [(20, 23, 5.0), (60, 62, 9.0)],
        "d": [],
    }
)
EVENTS = pl.DataFrame(
    [
        {
            "cell_id": "a",
            "type": "outage",
            "kind": "fault",
            "start": T0 + 40 * ROP,
            "end": T0 + 51 * ROP,
        }
    ]
)
PER_ALARM = 100 / 4  # one false alarm in these 4 cell-days, per 100 cell-days


@pytest.mark.parametrize(
    "budget,threshold,recall,false_alarms",
    [
        (0.0, 8.0, 0.0, 0.0),  # only above b's spike is nothing false left
        (PER_ALARM, 5.0, 1.0, PER_ALARM),  # b's spike may alert, c's not
        (2 * PER_ALARM, 1.0, 1.0, 2 * PER_ALARM),  # both spikes, not the quiet ROPs
        (3 * PER_ALARM, float(np.nextafter(1.0, -np.inf)), 1.0, 3 * PER_ALARM),  # everything
    ],
)
def test_the_threshold_spends_the_budget_and_no_more(budget, threshold, recall, false_alarms):
    assert threshold_at_budget(SCORES, EVENTS, budget, **RULE) == threshold
    m = recall_at_budget(SCORES, EVENTS, budget, **RULE)
    assert m["threshold"] == threshold
    assert m["event_recall"] == recall
    assert m["false_alarms_per_100_cell_days"] == pytest.approx(false_alarms)


def test_at_the_budget_precision_and_delay_are_those_of_the_alerts_it_raises():
    m = recall_at_budget(SCORES, EVENTS, PER_ALARM, **RULE)
    assert m["alerts"] == 2 and m["alert_precision"] == 0.5  # a's true alert, b's false one
    assert m["median_detection_delay_rops"] == 2.0  # the third ROP above completes the rule


def test_a_short_spike_never_alerts_however_high():
    levels = alert_levels(SCORES.filter(pl.col("cell_id") == "c"), 3, 15).to_numpy()
    assert levels.max() == 5.0  # the 2-ROP spike of 9 never fills 3 ROPs in a row


def test_levels_flag_exactly_what_the_alert_rule_flags_with_missing_rops():
    rng = np.random.default_rng(3)
    frame = pl.DataFrame(
        {
            "cell_id": np.repeat(["x", "y", "z"], 200),
            "ts": [T0 + i * ROP for i in range(200)] * 3,
            "anomaly_score": rng.gamma(2.0, 1.5, 600),
        }
    ).filter(pl.Series(rng.random(600) > 0.1))  # missing ROPs break runs
    levels = alert_levels(frame, 3, 15)
    for t in (1.0, 2.5, 4.0, 6.0):
        expected = alert_flags(frame, t, 3, 15)
        assert ((levels > t) == expected).all(), t
