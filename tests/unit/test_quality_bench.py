import re
from dataclasses import replace

import pytest

from bench import quality, run
from cellpulse.settings import TrainSettings
from cellpulse.simulator import World

TINY_TRAIN = TrainSettings(num_trees=20, n_jobs=1, min_data_in_leaf=20)
NUMBER = re.compile(r"^\d+\.\d\d \(\d+\.\d\d\)$")  # mean (worst)


def tiny(world: World) -> World:
    """The world with 24 cells and faults often enough that the scored days hold some."""
    cfg = world.config
    changes = tuple(c for c in cfg.changes if c.cell < 24)
    return replace(world, config=replace(cfg, cells=24, events_per_cell_day=0.15, changes=changes))


def test_reported_and_tuning_worlds_never_meet():
    assert set(quality.world_seeds(20, False)).isdisjoint(quality.world_seeds(20, True))
    assert quality.world_seeds(3, False) == [1, 2, 3]


def test_two_tiny_worlds_make_a_table_of_real_numbers(tmp_path):
    results = quality.run([1, 2], tmp_path, TINY_TRAIN, resize=tiny, log=lambda _: None)
    assert len(results) == 2
    for _, metrics in results:
        assert metrics["events"] > 0 and metrics["cell_days"] > 0
        for detector in quality.ANOMALY:
            false_alarms = metrics[f"anomaly.{detector}.false_alarms_per_100_cell_days"]
            assert 0 <= false_alarms < 1000
            assert 0 <= metrics[f"anomaly.{detector}.recall_at_budget"] <= 1
    header, rows = quality.table(results)
    assert header[:4] == ["metric", "cellpulse", "per-cell z-score", "hour-of-day z"]
    by_label = {r[0]: r for r in rows}
    for label in (
        "event recall",
        "false alarms / 100 cell-days",
        "recall at 0.5 FA / 100 cell-days",
    ):
        assert all(NUMBER.match(cell) for cell in by_label[label][1:4]), by_label[label]
    assert any(label.startswith("recall at budget: ") for label in by_label)
    congestion = by_label["congestion PR-AUC"]
    assert all(NUMBER.match(c) or c == "n/a" for c in (congestion[1], *congestion[4:]))
    assert "2 worlds (seeds 1, 2)" in quality.summary_line(results)


def test_world_options_belong_to_the_quality_suite_alone():
    with pytest.raises(SystemExit, match="quality suite"):
        run.main(["simulator", "--worlds", "3"])
    assert quality.parse(["--worlds", "3", "--tuning"]).worlds == 3
