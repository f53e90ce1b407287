from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest

from cellpulse.features.builder import KEY_COLUMNS, build_features
from cellpulse.features.kernels import compact_float32, robust_z, rolling_stats, scatter
from cellpulse.features.spec import FeatureParams, FeatureSpec, Lag, Rolling, default_spec, spec_for
from cellpulse.features.store import affected_days
from cellpulse.settings import Settings

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


def test_feature_params_carry_the_settings_that_shape_features(tmp_path):
    settings = Settings(
        home=tmp_path,
        rop_minutes=60,
        timezone="Europe/Berlin",
        holidays=[date(2026, 12, 25)],
        min_denominator=5,
        feature_chunk_cells=300,
    )
    params = FeatureParams.of(settings)
    assert params == FeatureParams(60, "Europe/Berlin", (date(2026, 12, 25),), 5, 300)
    assert spec_for(params) == default_spec(60, ("2026-12-25",))
    assert spec_for(params, ["prb_util_dl_pct"]).kpis == ("prb_util_dl_pct",)


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
    # features are stored as float32
    assert row["prb_util_dl_pct_lag_1d"].item() == np.float32(yesterday)
    assert row["prb_util_dl_pct_lag_15m"].item() == np.float32(prev)
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


@pytest.mark.parametrize(
    ("width", "first_slot", "positions"),
    [
        (4, 7, [0, 1, 2, 3, 50, 199]),  # windows cut at the grid's start, and a scattered few
        (24, 96 * 20_000 + 5, list(range(150, 200))),  # one late day: earlier blocks unread
        (96, 13, [95, 96, 97, 120]),
    ],
)
def test_rolling_stats_equal_a_direct_computation(width, first_slot, positions):
    rng = np.random.default_rng(3)
    grid = rng.gamma(2.0, 3.0, size=(6, 200))
    grid[rng.random(grid.shape) < 0.2] = np.nan
    grid[1, :] = 7.0  # constant: std exactly 0
    grid[2, 100:] = np.nan  # a silent cell
    at = np.array(positions)
    got = rolling_stats(grid, first_slot, width, at, ("mean", "std", "min", "max", "count"))
    assert set(got) == {"mean", "std", "min", "max", "count"}
    for r in range(grid.shape[0]):
        for i, p in enumerate(positions):
            window = grid[r, max(0, p - width + 1) : p + 1]
            seen = window[~np.isnan(window)]
            expected = {
                "count": float(seen.size),
                "mean": seen.mean() if seen.size else np.nan,
                "std": seen.std(ddof=1) if seen.size > 1 else np.nan,
                "min": seen.min() if seen.size else np.nan,
                "max": seen.max() if seen.size else np.nan,
            }
            for stat, value in expected.items():
                np.testing.assert_allclose(got[stat][r, i], value, rtol=1e-9, atol=1e-9)
    single = rolling_stats(grid, first_slot, width, at, ("max",), np.float32)
    assert single["max"].dtype == np.float32
    np.testing.assert_array_equal(single["max"], got["max"].astype(np.float32))


def test_grid_scatter_and_compaction_round_trip():
    values = np.array([10.0, 11.0, np.nan, 13.0, 14.0])
    row_of = np.array([[0, -1, 1], [4, 3, 2]])
    grid = scatter(values, row_of)
    np.testing.assert_array_equal(grid, [[10.0, np.nan, 11.0], [14.0, 13.0, np.nan]])
    present = row_of >= 0
    for layout in (grid, np.asfortranarray(grid), grid[:, ::-1][:, ::-1]):
        flat = compact_float32(layout, present, int(present.sum()))
        assert flat.dtype == np.float32
        np.testing.assert_array_equal(flat, grid[present].astype(np.float32))


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


def _build_plain(
    kpis: pl.DataFrame, spec: FeatureSpec, rop_minutes: int = 15, **kw
) -> pl.DataFrame:
    """build_features on a frame with a custom KPI column (no contract derivations needed)."""
    from cellpulse import contract

    padded = kpis.with_columns(pl.lit(0.0).alias(c) for c in contract.MEASUREMENT_NAMES)
    return build_features(padded, spec, rop_minutes=rop_minutes, min_denominator=10, **kw)


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


def test_the_baseline_median_ignores_missing_values():
    nan = np.nan
    a, b, c = (
        np.array([1.0, nan, 5.0, nan]),
        np.array([3.0, 2.0, nan, nan]),
        np.array([2.0, 4.0, nan, nan]),
    )
    out, _ = robust_z(np.zeros(4), [a, b, c])
    np.testing.assert_array_equal(out, [2.0, 3.0, 5.0, nan])
    four, _ = robust_z(
        np.zeros(1), [np.array([4.0]), np.array([1.0]), np.array([3.0]), np.array([10.0])]
    )
    assert four.tolist() == [3.5]


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


def test_calendar_is_local_time_across_a_clock_change():
    # Berlin leaves summer time on 2026-10-25 at 03:00 local (01:00 UTC).
    start = datetime(2026, 10, 24, 22, tzinfo=UTC)
    ts = [start + timedelta(minutes=15 * i) for i in (0, 1, 7, 8, 9, 12, 13, 40)]  # with gaps
    feats = _build_plain(
        one_cell(ts, [1.0] * len(ts)),
        FeatureSpec(kpis=("x",), missing_windows=(), holidays=("2026-10-25",)),
        timezone="Europe/Berlin",
    )
    local = [t.astimezone(ZoneInfo("Europe/Berlin")) for t in ts]
    assert feats["hour"].to_list() == [t.hour for t in local]
    assert feats["day_of_week"].to_list() == [t.weekday() for t in local]
    assert feats["is_holiday"].to_list() == [t.date() == date(2026, 10, 25) for t in local]
    assert feats["hour"].to_list()[3:5] == [2, 2]  # 00:00 and 00:15 UTC are both 02:xx local


def test_a_day_built_from_only_the_days_it_needs_equals_the_full_build(tiny_network):
    """Incremental: day D from D plus the days its windows and lags read is bit-for-bit the
    same as D inside a build of the whole range."""
    from cellpulse.features.builder import days_needed

    kpis = tiny_network[2].filter(pl.int_range(pl.len()).over("cell_id") % 11 != 5)  # holes
    day = date(2026, 1, 13)
    since = datetime(2026, 1, 13, tzinfo=UTC)
    needed = days_needed(SPEC, [day], 15)
    assert date(2026, 1, 12) in needed and date(2026, 1, 6) in needed
    assert date(2026, 1, 9) not in needed  # nothing reads four days back
    # The level changes' windows a week earlier end on the 6th: the 7th is not read.
    assert needed == [
        date(2025, 12, 23),
        date(2025, 12, 30),
        *(date(2026, 1, d) for d in (5, 6, 12, 13)),
    ]
    subset = kpis.filter(pl.col("ts").dt.date().is_in(needed))
    alone = build_features(subset, SPEC, rop_minutes=15, min_denominator=10, since=since)
    full = build(kpis).filter(pl.col("ts") >= since)
    assert alone.height == full.height > 0
    assert alone.equals(full)


def test_stuck_run_counts_repeats_up_to_its_window():
    from cellpulse.features.spec import StuckRun

    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    ts = [t0 + timedelta(minutes=15 * i) for i in (0, 1, 2, 3, 4, 5, 7, 8)]  # slot 6 missing
    kpis = one_cell(ts, [5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    spec = FeatureSpec(
        kpis=("x",), stuck=(StuckRun("x", "1h"),), calendar=False, missing_windows=()
    )
    feats = _build_plain(kpis, spec)
    # 1h holds four ROPs, so at most three earlier ones can repeat; a gap breaks the run.
    assert feats["x_stuck_rops"].to_list() == [0, 0, 1, 2, 3, 3, 0, 1]


def test_cosite_features_compare_a_cell_with_its_site():
    from cellpulse.features.spec import CoSite

    ts = datetime(2026, 1, 5, tzinfo=UTC)
    kpis = pl.concat(
        [
            one_cell([ts], [x]).with_columns(cell_id=pl.lit(c), site_id=pl.lit(s))
            for c, s, x in [
                ("a1", "A", 10.0),
                ("a2", "A", 30.0),
                ("a3", "A", None),
                ("b1", "B", 7.0),
            ]
        ]
    )
    stats = ("share", "site_mean", "siblings_mean", "sibling_dev")
    spec = FeatureSpec(
        kpis=("x",), cosite=(CoSite("x", stats),), calendar=False, missing_windows=()
    )
    rows = {r["cell_id"]: r for r in _build_plain(kpis, spec).iter_rows(named=True)}
    assert rows["a1"]["x_share"] == 0.25 and rows["a2"]["x_share"] == 0.75
    assert rows["a1"]["x_site_mean"] == 20.0
    assert rows["a1"]["x_siblings_mean"] == 30.0 and rows["a1"]["x_sibling_dev"] == -20.0
    assert rows["a3"]["x_siblings_mean"] == 20.0 and rows["a3"]["x_sibling_dev"] is None
    assert rows["b1"]["x_share"] == 1.0 and rows["b1"]["x_siblings_mean"] is None


def test_holidays_come_from_the_spec_in_local_time():
    ts = [datetime(2026, 12, 24, 22, tzinfo=UTC), datetime(2026, 12, 24, 23, tzinfo=UTC)]
    spec = FeatureSpec(kpis=("x",), missing_windows=(), holidays=("2026-12-25",))
    plain = _build_plain(one_cell(ts, [1.0, 1.0]), spec, 60, timezone="Europe/Berlin")
    assert plain["is_holiday"].to_list() == [False, True]  # 23:00 UTC is midnight in Berlin
    assert spec.hash() != FeatureSpec(kpis=("x",), missing_windows=()).hash()


def test_unaligned_timestamps_and_duplicated_keys_are_refused():
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    with pytest.raises(ValueError, match="not aligned to the 15-minute ROP"):
        _build_plain(one_cell([t0 + timedelta(minutes=7)], [1.0]), FeatureSpec(kpis=("x",)))
    with pytest.raises(ValueError, match="duplicated"):
        _build_plain(one_cell([t0, t0], [1.0, 2.0]), FeatureSpec(kpis=("x",)))
    with pytest.raises(ValueError, match="whole number of 60-minute ROPs"):
        _build_plain(one_cell([t0], [1.0]), FeatureSpec(kpis=("x",), lags=(Lag("x", "15m"),)), 60)


def _level_change_by_masked_sums(grid, first, earlier, first_slot, width, positions):
    """The level change by its definition through `rolling_stats`: both series masked to
    the slots finite in both, each summed over its trailing window."""
    now = grid[:, first:]
    past = np.where(earlier >= 0, grid[:, np.maximum(earlier, 0)], np.nan)
    both = np.isfinite(now) & np.isfinite(past)
    sums = [
        rolling_stats(np.where(both, v, np.nan), first_slot, width, positions, ("sum",))["sum"]
        for v in (now, past)
    ]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sums[1] > 0, sums[0] / sums[1] - 1.0, np.nan)


def test_the_level_change_kernel_equals_its_definition_bit_for_bit():
    """One pass over the grid gives what masking both series and summing each with
    `rolling_stats` gives, bit for bit, and what summing slot by slot gives (to rounding):
    missing and infinite values on either side, slots with no earlier column, windows that
    start before the grid, a zero or negative earlier sum."""
    from cellpulse.features.kernels import level_change

    rng = np.random.default_rng(7)
    width, days, cells = 8, 5, 40
    grid = rng.gamma(2.0, 10.0, size=(cells, days * width))
    grid[rng.random(grid.shape) < 0.15] = np.nan
    grid[rng.random(grid.shape) < 0.01] = np.inf
    grid[3, :] = 0.0  # then sums to 0: NaN
    grid[4, : 2 * width] *= -1.0  # then sums below 0: NaN
    first = width  # the window starts a day into the grid
    lag = 2 * width
    earlier = np.arange(first, grid.shape[1]) - lag
    earlier[earlier < 0] = -1
    earlier[rng.random(earlier.size) < 0.1] = -1  # days the grid does not hold
    first_slot = 1000 * width + 3  # blocks aligned to absolute slot 0, not to the grid
    positions = np.arange(width - 2, grid.shape[1] - first)

    got = level_change(grid, first, earlier, first_slot, width, positions)
    want = _level_change_by_masked_sums(grid, first, earlier, first_slot, width, positions)
    assert np.array_equal(got, want, equal_nan=True)
    assert np.isfinite(got).mean() > 0.5 and np.isnan(got[3]).all()

    # And slot by slot, straight from the definition.
    naive = np.full_like(got, np.nan)
    for r in range(cells):
        for i, e in enumerate(positions):
            now_sum = then_sum = 0.0
            count = 0
            for k in range(max(e - width + 1, 0), e + 1):
                now, then = grid[r, first + k], grid[r, earlier[k]] if earlier[k] >= 0 else np.nan
                if np.isfinite(now) and np.isfinite(then):
                    now_sum, then_sum, count = now_sum + now, then_sum + then, count + 1
            if count and then_sum > 0:
                naive[r, i] = now_sum / then_sum - 1.0
    assert np.allclose(got, naive, rtol=1e-12, equal_nan=True)
