from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from cellpulse import contract
from cellpulse.simulator import (
    AREA_TYPES,
    DeliveryConfig,
    SimulationConfig,
    build_topology,
    draw_events,
    iter_days,
    make_event,
    simulate_day,
    split_into_files,
)
from tests.conftest import OUTAGE_CELL, TINY


def test_same_seed_same_network_other_seed_other_network():
    cfg = SimulationConfig(cells=9, days=2, seed=3)
    a = pl.concat([d for _, d in iter_days(cfg)])
    b = pl.concat([d for _, d in iter_days(cfg)])
    c = pl.concat([d for _, d in iter_days(SimulationConfig(cells=9, days=2, seed=4))])
    assert a.equals(b)
    assert not a.equals(c)


def test_any_day_can_be_produced_alone():
    cfg = SimulationConfig(cells=9, days=3, seed=5)
    topo, events = build_topology(cfg), draw_events(build_topology(cfg), cfg)
    whole = [d for _, d in iter_days(cfg, topo, events)]
    assert simulate_day(topo, events, cfg, 2).equals(whole[2])


def test_contract_shape_and_row_count(tiny_network):
    _, _, kpis = tiny_network
    assert kpis.height == TINY.cells * TINY.days * TINY.rops_per_day
    assert set(contract.schema()) == set(kpis.columns)
    assert kpis.select("cell_id", "ts").is_duplicated().sum() == 0
    assert kpis.schema["ts"] == pl.Datetime("us", "UTC")


def test_invariants_hold_on_a_large_sample():
    cfg = SimulationConfig(cells=600, days=3, seed=9, events_per_cell_day=0.2)
    df = pl.concat([d for _, d in iter_days(cfg)])
    for m in contract.MEASUREMENTS:
        col = df[m.name].drop_nulls()
        assert col.is_finite().all(), m.name
        if m.low is not None:
            assert col.min() >= m.low, m.name
        if m.high is not None:
            assert col.max() <= m.high, m.name
    for succ, att in contract.SUCCESS_PAIRS:
        assert (df[succ] <= df[att]).all(), succ
    assert df["unavail_s"].max() <= 15 * 60


def test_daily_profile_peaks_where_the_area_type_says():
    cfg = SimulationConfig(cells=300, days=1, seed=2, events_per_cell_day=0.0)  # a Monday
    topo = build_topology(cfg)
    day = simulate_day(topo, draw_events(topo, cfg), cfg, 0)
    areas = pl.DataFrame(
        {"cell_id": topo.cell_id.tolist(), "area": [AREA_TYPES[a] for a in topo.area]}
    )
    hourly = (
        day.join(areas, on="cell_id")
        .group_by("area", pl.col("ts").dt.hour().alias("h"))
        .agg(pl.col("prb_util_dl_pct").mean())
    )
    peak = {
        a: hourly.filter(pl.col("area") == a).sort("prb_util_dl_pct")["h"][-1]
        for a in ("business", "residential")
    }
    assert 9 <= peak["business"] <= 16
    assert 18 <= peak["residential"] <= 22


def test_outage_leaves_its_footprint(tiny_network):
    topo, events, kpis = tiny_network
    ev = events.row(0, named=True)
    during = kpis.filter(
        (pl.col("cell_id") == ev["cell_id"])
        & (pl.col("ts") >= ev["start"])
        & (pl.col("ts") < ev["end"])
    )
    assert during.height == 24  # 6 hours of 15-minute ROPs
    assert (during["unavail_s"] == 900).all()
    assert (during["dl_volume_mbit"] == 0).all()
    assert during["dl_ue_thp_mbps"].null_count() == during.height
    # Its site's other sectors absorb the traffic.
    sibling = topo.cell_id[OUTAGE_CELL + 1 if OUTAGE_CELL % 3 < 2 else OUTAGE_CELL - 1]
    same_time_day_before = kpis.filter(
        (pl.col("cell_id") == sibling)
        & (pl.col("ts") >= ev["start"] - timedelta(days=7))
        & (pl.col("ts") < ev["end"] - timedelta(days=7))
    )
    during_sib = kpis.filter(
        (pl.col("cell_id") == sibling) & (pl.col("ts") >= ev["start"]) & (pl.col("ts") < ev["end"])
    )
    assert during_sib["rrc_conn_mean"].mean() > 1.1 * same_time_day_before["rrc_conn_mean"].mean()


@pytest.mark.parametrize(
    "kind,column,direction",
    [
        ("sleeping_cell", "dl_volume_mbit", "down"),
        ("throughput_degradation", "dl_ue_thp_mbps", "down"),
        ("accessibility_drop", "rrc_estab_succ", "down"),
        ("interference", "ul_interference_dbm", "up"),
        ("surge", "prb_util_dl_pct", "up"),
    ],
)
def test_each_event_type_moves_its_kpi(kind, column, direction):
    cfg = SimulationConfig(cells=6, days=2, seed=4, events_per_cell_day=0.0)
    topo = build_topology(cfg)
    start = cfg.start_ts + timedelta(days=1, hours=10)
    events = pl.DataFrame([make_event(topo, 0, kind, start, 4)])
    quiet = pl.DataFrame(schema=events.schema)
    with_event = simulate_day(topo, events, cfg, 1).filter(pl.col("cell_id") == topo.cell_id[0])
    without = simulate_day(topo, quiet, cfg, 1).filter(pl.col("cell_id") == topo.cell_id[0])
    window = (pl.col("ts") >= start) & (pl.col("ts") < start + timedelta(hours=4))
    a = with_event.filter(window)[column].fill_null(0).mean()
    b = without.filter(window)[column].fill_null(0).mean()
    assert (a < 0.8 * b) if direction == "down" else (a > b + 0.1 * abs(b) or a > b + 5)


def test_files_are_hourly_and_named_like_an_oss_export():
    cfg = SimulationConfig(cells=3, days=1)
    _, day = next(iter_days(cfg))
    files = list(split_into_files(day, 60))
    assert len(files) == 24
    name, part = files[9]
    assert name == "A20260105.0900+0000-1000+0000_cellpulse-sim.parquet"
    assert part.height == 3 * 4
    assert sum(p.height for _, p in files) == day.height


def test_missing_rops_are_dropped_at_the_configured_rate():
    cfg = SimulationConfig(cells=30, days=2, delivery=DeliveryConfig(missing_rop_rate=0.05), seed=1)
    df = pl.concat([d for _, d in iter_days(cfg)])
    full = 30 * 2 * 96
    assert 0.93 * full < df.height < 0.97 * full
    assert np.isfinite(df["prb_util_dl_pct"].drop_nulls().to_numpy()).all()


def test_stuck_counters_repeat_one_value():
    cfg = SimulationConfig(cells=6, days=2, seed=4, events_per_cell_day=0.0)
    topo = build_topology(cfg)
    start = cfg.start_ts + timedelta(days=1, hours=10)
    events = pl.DataFrame([make_event(topo, 0, "stuck_counters", start, 3)])
    day = simulate_day(topo, events, cfg, 1).filter(pl.col("cell_id") == topo.cell_id[0])
    window = day.filter((pl.col("ts") >= start) & (pl.col("ts") < start + timedelta(hours=3)))
    assert window.height == 12
    for column in ("dl_volume_mbit", "rrc_estab_att", "prb_util_dl_pct"):
        assert window[column].n_unique() == 1, column
    after = day.filter(pl.col("ts") >= start + timedelta(hours=3))
    assert after["dl_volume_mbit"].n_unique() > 1


def test_gradual_degradation_worsens_over_days():
    cfg = SimulationConfig(cells=6, days=5, seed=4, events_per_cell_day=0.0)
    topo = build_topology(cfg)
    events = pl.DataFrame(
        [
            make_event(
                topo, 0, "gradual_degradation", cfg.start_ts + timedelta(days=1), 72, severity=4.0
            )
        ]
    )
    df = pl.concat([d for _, d in iter_days(cfg, topo, events)])
    daily = (
        df.filter(pl.col("cell_id") == topo.cell_id[0])
        .group_by(pl.col("ts").dt.date().alias("d"))
        .agg(pl.col("cqi_mean").mean())
        .sort("d")["cqi_mean"]
        .to_list()
    )
    assert daily[1] > daily[2] > daily[3]  # ramps down while it lasts
    assert daily[4] > daily[3] + 1  # and recovers when it ends


def test_outage_traffic_moves_to_the_same_sectors_other_layer():
    cfg = SimulationConfig(cells=6, days=2, seed=2, events_per_cell_day=0.0)
    topo = build_topology(cfg)
    assert topo.sector_index[0] == topo.sector_index[1]  # n78 and B3 on one sector
    start = cfg.start_ts + timedelta(days=1, hours=10)
    events = pl.DataFrame([make_event(topo, 0, "outage", start, 4)])
    quiet = pl.DataFrame(schema=events.schema)
    window = (pl.col("ts") >= start) & (pl.col("ts") < start + timedelta(hours=4))
    sibling = pl.col("cell_id") == topo.cell_id[1]
    with_outage = simulate_day(topo, events, cfg, 1).filter(window & sibling)
    without = simulate_day(topo, quiet, cfg, 1).filter(window & sibling)
    assert with_outage["rrc_conn_mean"].mean() > 1.5 * without["rrc_conn_mean"].mean()


def test_sectors_carry_one_to_three_bands_and_sites_have_neighbours():
    topo = build_topology(SimulationConfig(cells=900, seed=3))
    layers = pl.DataFrame({"sector": topo.sector_index, "band": topo.band.tolist()})
    per_sector = layers.group_by("sector").agg(pl.col("band").n_unique())["band"]
    assert per_sector.min() >= 1 and per_sector.max() == 3
    sites = pl.DataFrame({"site": topo.site_index, "x": topo.x_km, "y": topo.y_km}).unique("site")
    xy = sites.select("x", "y").to_numpy()
    dist = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    assert np.median(dist.min(axis=1)) < 5  # km to the nearest other site
    assert set(topo.band) == {"n78", "n28", "B3", "B20"}


def test_holidays_load_like_sundays_and_traffic_grows():
    base = SimulationConfig(cells=60, days=8, seed=6, events_per_cell_day=0.0, growth_per_month=0.3)
    holiday = SimulationConfig(**{**base.__dict__, "holidays": (base.start,)})

    def daily_volume(cfg):
        df = pl.concat([d for _, d in iter_days(cfg)])
        return (
            df.group_by(pl.col("ts").dt.date().alias("d"))
            .agg(pl.col("dl_volume_mbit").sum())
            .sort("d")["dl_volume_mbit"]
            .to_list()
        )

    plain, with_holiday = daily_volume(base), daily_volume(holiday)
    assert with_holiday[0] != plain[0] and with_holiday[1:] == plain[1:]
    assert abs(with_holiday[0] - plain[6]) < abs(plain[0] - plain[6])  # Monday 5th ~ Sunday 11th
    assert plain[7] > plain[0] * 1.03  # a week of growth at 30 %/month


def test_realistic_delivery_ingests_to_exactly_the_truth(settings):
    from datetime import UTC, datetime

    from cellpulse.ingest import ingest_files
    from cellpulse.simulator import write_network

    cfg = SimulationConfig(
        cells=9,
        days=3,
        seed=8,
        delivery=DeliveryConfig(
            missing_rop_rate=0.01, late_file_rate=0.1, redelivery_rate=0.15, duplicate_file_rate=0.1
        ),
    )
    summary = write_network(
        cfg, settings.layout.landing, settings.layout.ground_truth, settings.congestion
    )
    assert summary.late_files and summary.redelivered_files and summary.duplicate_files
    truth = pl.concat([d for _, d in iter_days(cfg)]).sort("cell_id", "ts")
    result = ingest_files([settings.layout.landing], settings, datetime(2026, 2, 1, tzinfo=UTC))
    assert result.count("duplicate") == summary.duplicate_files
    stored = settings.layout.kpi.read().sort("cell_id", "ts")
    assert stored.equals(truth.select(stored.columns))
    assert result.rows_accepted - result.rows_replaced == truth.height


def test_event_rates_are_configurable_per_type():
    from cellpulse.simulator.config import parse_event_weights

    weights = parse_event_weights(["outage=5", "surge=0"])
    cfg = SimulationConfig(
        cells=300, days=10, seed=2, events_per_cell_day=0.05, event_weights=weights
    )
    events = draw_events(build_topology(cfg), cfg)
    counts = dict(events.group_by("type").len().iter_rows())
    assert "surge" not in counts
    assert counts["outage"] > 3 * max(v for k, v in counts.items() if k != "outage") / 2
    with pytest.raises(ValueError, match="TYPE one of"):
        parse_event_weights(["blackout=1"])
    with pytest.raises(ValueError, match="not a number"):
        parse_event_weights(["outage=lots"])


@pytest.mark.parametrize("rop_minutes", [15, 60])
@pytest.mark.parametrize("preset", ["prb_volume", "volume_users"])
def test_a_kpi_subset_writes_only_its_measurements_with_the_same_values(
    preset, rop_minutes, settings
):
    """A subset is the full simulation with the other measurements left out: same rows,
    same values, and the landing files hold only keys, dimensions and the subset."""
    from cellpulse.simulator import KPI_PRESETS, parse_kpis, write_network

    kpis = parse_kpis(preset)
    assert kpis == KPI_PRESETS[preset]
    full = SimulationConfig(cells=12, days=2, seed=4, rop_minutes=rop_minutes)
    subset = SimulationConfig(cells=12, days=2, seed=4, rop_minutes=rop_minutes, kpis=kpis)
    a = pl.concat([d for _, d in iter_days(full)])
    b = pl.concat([d for _, d in iter_days(subset)])
    assert b.columns == [*contract.KEYS, *contract.DIMENSIONS, *kpis]
    assert b.equals(a.select(b.columns))
    assert b.height == 12 * 2 * (1440 // rop_minutes)

    summary = write_network(
        subset, settings.layout.landing, settings.layout.ground_truth, settings.congestion
    )
    assert summary.kpis == kpis
    written = pl.read_parquet(sorted(settings.layout.landing.glob("*.parquet")))
    assert set(written.columns) == set(b.columns)
    assert written.height == b.height


def test_kpis_option_takes_presets_or_measurement_names():
    from cellpulse.simulator import parse_kpis

    assert parse_kpis("all") is None
    assert parse_kpis("prb_util_dl_pct, ho_att") == ("prb_util_dl_pct", "ho_att")
    with pytest.raises(ValueError, match="unknown: prb_util"):
        parse_kpis("prb_util,dl_volume_mbit")
    with pytest.raises(ValueError, match="contract measurements"):
        SimulationConfig(kpis=("dl_volume",))
