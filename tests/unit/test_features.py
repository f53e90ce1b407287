from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from cellpulse.features.builder import KEY_COLUMNS, build_features, row_median
from cellpulse.features.spec import FeatureSpec, Lag, Rolling, default_spec
from cellpulse.features.store import affected_days

SPEC = default_spec(15)


def build(kpis: pl.DataFrame, spec: FeatureSpec = SPEC) -> pl.DataFrame:
    return build_features(kpis, spec, rop_minutes=15, min_denominator=10)


def test_columns_are_exactly_what_the_spec_declares(tiny_network):
    feats = build(tiny_network[2].head(2000))
    assert feats.columns == [*KEY_COLUMNS, *SPEC.columns()]
    assert len(set(feats.columns)) == feats.width
    assert "prb_util_dl_pct_mean_24h" in feats.columns
    assert "dl_volume_mbit_lag_1d" in feats.columns


def test_spec_hash_is_stable_and_changes_with_the_spec():
    assert default_spec(15).hash() == default_spec(15).hash()
    assert default_spec(15).hash() != default_spec(60).hash()
    assert SPEC.lookback() == timedelta(days=21)


def test_point_in_time_correct_on_every_feature(tiny_network):
    """Perturbing every row after a cut-off leaves every feature up to the cut-off identical."""
    kpis = tiny_network[2]
    cut = datetime(2026, 1, 11, 13, 0, tzinfo=UTC)
    rng = np.random.default_rng(0)
    later = pl.col("ts") > cut
    noisy = kpis.with_columns(
        pl.when(later).then(pl.col(c) * pl.lit(rng.uniform(0.2, 3.0))).otherwise(pl.col(c))
        for c in kpis.columns
        if kpis.schema[c] == pl.Float64
    )
    a = build(kpis).filter(pl.col("ts") <= cut)
    b = build(noisy).filter(pl.col("ts") <= cut)
    assert a.height > 0
    assert a.equals(b)
    assert not build(kpis).filter(later).equals(build(noisy).filter(later))


def test_lags_are_exact_in_time_even_with_missing_rops(tiny_network):
    kpis = tiny_network[2].filter(pl.col("cell_id") == tiny_network[0].cell_id[0])
    t = datetime(2026, 1, 7, 10, 0, tzinfo=UTC)
    holed = kpis.filter(pl.col("ts") != t - timedelta(minutes=30))  # one ROP missing
    feats = build(holed)
    row = feats.filter(pl.col("ts") == t)
    yesterday = kpis.filter(pl.col("ts") == t - timedelta(days=1))["prb_util_dl_pct"].item()
    prev = kpis.filter(pl.col("ts") == t - timedelta(minutes=15))["prb_util_dl_pct"].item()
    assert row["prb_util_dl_pct_lag_1d"].item() == yesterday
    assert row["prb_util_dl_pct_lag_15m"].item() == prev
    after_hole = feats.filter(pl.col("ts") == t - timedelta(minutes=15))
    assert after_hole["prb_util_dl_pct_lag_15m"].item() is None  # the missing ROP, not a shift


def test_rolling_windows_are_time_based():
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    ts = [t0 + timedelta(minutes=15 * i) for i in (0, 1, 2, 3, 8)]  # a 1h gap before the last
    kpis = one_cell(ts, [1.0, 2.0, 3.0, 4.0, 10.0])
    spec = FeatureSpec(
        kpis=("x",),
        rolling=(Rolling("x", "1h", ("mean", "max")),),
        calendar=False,
        missing_windows=("1h",),
    )
    feats = _build_plain(kpis, spec)
    assert feats["x_mean_1h"].to_list() == [1.0, 1.5, 2.0, 2.5, 10.0]
    assert feats["x_max_1h"].to_list() == [1.0, 2.0, 3.0, 4.0, 10.0]
    assert feats["rops_missing_1h"].to_list() == [3, 2, 1, 0, 3]


def one_cell(ts: list[datetime], x: list[float]) -> pl.DataFrame:
    """KPIs of one cell with a single custom KPI column `x`."""
    return pl.DataFrame(
        {
            "cell_id": "a",
            "ts": ts,
            "site_id": "s",
            "region": "r",
            "rat": "NR",
            "band": "n78",
            "x": x,
        }
    )


def _build_plain(kpis: pl.DataFrame, spec: FeatureSpec) -> pl.DataFrame:
    """build_features on a frame with a custom KPI column (no contract derivations needed)."""
    from cellpulse import contract

    padded = kpis.with_columns(pl.lit(0.0).alias(c) for c in contract.MEASUREMENT_NAMES)
    return build_features(padded, spec, rop_minutes=15, min_denominator=10)


def test_ratio_kpis_come_from_counters_and_are_null_on_tiny_denominators(tiny_network):
    kpis = (
        tiny_network[2]
        .head(4)
        .with_columns(
            pl.Series("rrc_estab_att", [100.0, 5.0, 0.0, 50.0]),
            pl.Series("rrc_estab_succ", [99.0, 5.0, 0.0, 40.0]),
        )
    )
    feats = build(kpis).sort("ts")
    assert feats["rrc_sr_pct"].to_list() == [99.0, None, None, 80.0]


def test_hour_of_week_baseline_is_the_median_of_past_weeks():
    t0 = datetime(2026, 1, 5, 12, tzinfo=UTC)
    ts = [t0 + timedelta(days=7 * w) for w in range(4)]
    kpis = one_cell(ts, [10.0, 30.0, 20.0, 60.0])
    from cellpulse.features.spec import HourOfWeekBaseline

    spec = FeatureSpec(
        kpis=("x",), baselines=(HourOfWeekBaseline("x", 3),), calendar=False, missing_windows=()
    )
    feats = _build_plain(kpis, spec)
    last = feats.row(3, named=True)
    assert last["x_how_median"] == 20.0
    assert last["x_how_z"] == pytest.approx((60 - 20) / (1.4826 * 10))


def test_row_median_ignores_nulls():
    df = pl.DataFrame(
        {"a": [1.0, None, 5.0, None], "b": [3.0, 2.0, None, None], "c": [2.0, 4.0, None, None]}
    )
    out = df.select(row_median([pl.col("a"), pl.col("b"), pl.col("c")]).alias("m"))
    assert out["m"].to_list() == [2.0, 3.0, 5.0, None]


def test_a_changed_day_stales_every_later_day_whose_lookback_reaches_it():
    available = [date(2026, 1, 1) + timedelta(days=i) for i in range(40)]
    days = affected_days([date(2026, 1, 10)], SPEC, available)
    assert days[0] == date(2026, 1, 10) and days[-1] == date(2026, 1, 31)
    assert affected_days([date(2026, 2, 9)], SPEC, available) == [date(2026, 2, 9)]


def test_lag_spec_names_its_column():
    assert Lag("dl_volume_mbit", "1d").column() == "dl_volume_mbit_lag_1d"


def test_calendar_covers_the_whole_week():
    ts = [datetime(2026, 1, 5, tzinfo=UTC) + timedelta(hours=h) for h in range(0, 168, 1)]
    feats = _build_plain(
        one_cell(ts, [1.0] * len(ts)), FeatureSpec(kpis=("x",), missing_windows=())
    )
    assert feats["hour_of_week"].to_list() == list(range(168))  # Sunday 23:00 is 167
    assert feats["is_weekend"].sum() == 48
