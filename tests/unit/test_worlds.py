from dataclasses import replace
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from cellpulse.simulator import (
    EVENT_SCHEMA,
    FAULT_TYPES,
    LoadShape,
    PlannedChange,
    SimulationConfig,
    build_topology,
    draw_world,
    make_event,
    simulate_day,
)
from cellpulse.simulator.config import EVENT_SHAPES
from cellpulse.simulator.worlds import VISIBLE_FAULTS

WORLDS = [draw_world(seed) for seed in range(1, 51)]


def test_same_seed_same_world_other_seed_other_world():
    assert draw_world(7) == draw_world(7)
    assert len({repr(w.config) for w in WORLDS}) == len(WORLDS)


def test_every_knob_reaches_its_range_over_fifty_worlds():
    configs = [w.config for w in WORLDS]
    assert {c.rop_minutes for c in configs} == {15, 60}
    assert {w.kpi_subset for w in WORLDS} == {"all", "prb_volume", "volume_users"}
    assert {w.scored_days for w in WORLDS} == {3, 4}
    cells = [c.cells for c in configs]
    assert min(cells) < 70 and max(cells) > 110
    growth = [c.growth_per_month for c in configs]
    assert min(growth) < 0.02 and max(growth) > 0.13
    noise = [c.noise for c in configs]
    assert min(noise) < 0.75 and max(noise) > 1.65
    shifts = [c.shape.shift_hours for c in configs]
    assert min(shifts) < -1.5 and max(shifts) > 1.5
    sharp = [c.shape.sharpness for c in configs]
    assert min(sharp) < 0.7 and max(sharp) > 1.5
    weekend = [c.shape.weekday_levels[5] for c in configs]
    assert min(weekend) < 0.8 and max(weekend) > 1.1
    assert {len(c.holidays) for c in configs} == {0, 1}
    assert {len(c.changes) for c in configs} == {0, 1, 2, 3}
    changes = [ch for c in configs for ch in c.changes]
    assert any(ch.capacity > 1.8 for ch in changes) and any(ch.load < 0.7 for ch in changes)
    assert any(ch.load > 1.4 for ch in changes)
    # Every fault type happens somewhere, none where its KPIs cannot show it.
    assert set(FAULT_TYPES) == {t for w in WORLDS for t in w.fault_types}
    assert all(set(w.fault_types) <= set(VISIBLE_FAULTS[w.kpi_subset]) for w in WORLDS)
    # Magnitudes: level shifts from x0.3 to x0.8; degradations longer than they used to be.
    shift_ranges = [c.event_shapes["level_shift"][2] for c in configs]
    assert min(lo for lo, _ in shift_ranges) < 0.35 and max(hi for _, hi in shift_ranges) > 0.75
    longest = max(c.event_shapes["gradual_degradation"][1][1] for c in configs)
    assert longest > 2 * EVENT_SHAPES["gradual_degradation"][1][1]


def _one_cell(cfg: SimulationConfig, events: list[dict], day: int) -> pl.DataFrame:
    """Cell 0's KPIs of `day` with `events` (rows of make_event) placed."""
    topo = build_topology(cfg)
    frame = pl.DataFrame(events, schema=EVENT_SCHEMA)
    return simulate_day(topo, frame, cfg, day).filter(pl.col("cell_id") == topo.cell_id[0])


QUIET = SimulationConfig(cells=6, days=4, seed=4, events_per_cell_day=0.0)


def test_a_level_shift_keeps_its_share_of_the_traffic_for_days():
    topo = build_topology(QUIET)
    shift = make_event(topo, 0, "level_shift", QUIET.start_ts + timedelta(days=1), 48, 0.4)
    for day in (1, 2):
        with_shift = _one_cell(QUIET, [shift], day)
        without = _one_cell(QUIET, [], day)
        for kpi in ("dl_volume_mbit", "rrc_conn_mean", "prb_util_dl_pct"):
            ratio = with_shift[kpi].sum() / without[kpi].sum()
            assert ratio == pytest.approx(0.4, abs=0.05), (day, kpi)
    assert _one_cell(QUIET, [shift], 3).equals(_one_cell(QUIET, [], 3))  # over after 2 days


def test_a_slow_degradation_worsens_from_its_start_to_its_end():
    topo = build_topology(QUIET)
    slow = make_event(topo, 0, "slow_degradation", QUIET.start_ts + timedelta(days=1), 72, 0.6)
    ratios, cqi = [], []
    for day in (1, 2, 3):
        with_fault, without = _one_cell(QUIET, [slow], day), _one_cell(QUIET, [], day)
        ratios.append(with_fault["dl_volume_mbit"].sum() / without["dl_volume_mbit"].sum())
        cqi.append(with_fault["cqi_mean"].mean() - without["cqi_mean"].mean())
    assert ratios[0] > ratios[1] > ratios[2]  # a growing share lost
    assert ratios[2] == pytest.approx(1 - 0.6 * 5 / 6, abs=0.05)  # the last day's mean ramp
    assert cqi[0] > cqi[1] > cqi[2] and cqi[2] < -1.0


def test_a_capacity_upgrade_lowers_utilisation_from_its_day_on_not_the_traffic():
    upgraded = replace(QUIET, changes=(PlannedChange(0, 2, capacity=2.0),))
    before = _one_cell(upgraded, [], 1).equals(_one_cell(QUIET, [], 1))
    after, plain = _one_cell(upgraded, [], 2), _one_cell(QUIET, [], 2)
    assert before
    assert after["prb_util_dl_pct"].mean() < 0.6 * plain["prb_util_dl_pct"].mean()
    assert after["rrc_conn_mean"].sum() == pytest.approx(plain["rrc_conn_mean"].sum())
    assert after["dl_ue_thp_mbps"].mean() > plain["dl_ue_thp_mbps"].mean()


def test_a_load_step_moves_the_traffic_from_its_day_on():
    stepped = replace(QUIET, changes=(PlannedChange(0, 2, load=0.6),))
    after, plain = _one_cell(stepped, [], 2), _one_cell(QUIET, [], 2)
    assert after["rrc_conn_mean"].sum() / plain["rrc_conn_mean"].sum() == pytest.approx(0.6)


def test_the_load_shape_moves_sharpens_and_scales_the_day():
    def busiest_hour(cfg: SimulationConfig) -> int:
        day = _one_cell(cfg, [], 1)  # a Tuesday
        return int(day["ts"].dt.hour()[int(np.argmax(day["rrc_conn_mean"].to_numpy()))])

    later = replace(QUIET, noise=0.0, shape=LoadShape(shift_hours=2.0))
    assert (busiest_hour(later) - busiest_hour(replace(QUIET, noise=0.0))) % 24 == 2
    quieter = replace(QUIET, shape=LoadShape(weekday_levels=(1.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0)))
    ratio = (
        _one_cell(quieter, [], 1)["rrc_conn_mean"].sum()
        / _one_cell(QUIET, [], 1)["rrc_conn_mean"].sum()
    )
    assert 0.5 < ratio < 0.7  # users = peak x (0.06 + 0.94 x shape): a floor stays
