"""A cell's hour-of-day profile (models.profile): what it learns, how it adds up across
reads, and how the anomaly score judges a cell against it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from cellpulse.models.profile import MEAN, SPREAD, HourProfile, hour_sums

START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday


def _cells(days: int, rop_minutes: int, seed: int = 3) -> pl.DataFrame:
    """Two cells: "busy" carries 100 on workdays and 40 on weekends from 08:00 to 20:00
    and 10 at night; "quiet" a tenth of that; multiplicative noise of 10 %."""
    rng = np.random.default_rng(seed)
    ts = [START + timedelta(minutes=rop_minutes * i) for i in range(days * 1440 // rop_minutes)]
    frames = []
    for cell, scale in (("busy", 1.0), ("quiet", 0.1)):
        hour = np.array([t.hour for t in ts])
        weekend = np.array([t.weekday() >= 5 for t in ts])
        level = np.where((hour >= 8) & (hour < 20), np.where(weekend, 40.0, 100.0), 10.0)
        noise = rng.normal(1.0, 0.1, len(ts))
        frames.append(
            pl.DataFrame({"cell_id": cell, "ts": ts, "dl_volume_mbit": level * scale * noise})
        )
    return pl.concat(frames)


def _at(profile: HourProfile, cell: str, when: datetime) -> tuple[float, float]:
    row = profile.lookup(pl.DataFrame({"cell_id": [cell], "ts": [when]}))
    return row[f"dl_volume_mbit{MEAN}"][0], row[f"dl_volume_mbit{SPREAD}"][0]


def test_a_profile_learns_each_cell_s_level_and_spread_at_each_hour_and_kind_of_day():
    profile = HourProfile.learn(_cells(days=14, rop_minutes=15), ["dl_volume_mbit"])
    workday_noon = START + timedelta(days=2, hours=12)  # Wednesday
    weekend_noon = START + timedelta(days=5, hours=12)  # Saturday
    night = START + timedelta(days=2, hours=3)
    mean, spread = _at(profile, "busy", workday_noon)
    assert mean == pytest.approx(100, rel=0.06) and spread == pytest.approx(10, rel=0.3)
    mean, spread = _at(profile, "busy", weekend_noon)
    assert mean == pytest.approx(40, rel=0.06) and spread == pytest.approx(4, rel=0.4)
    mean, spread = _at(profile, "quiet", night)
    assert mean == pytest.approx(1, rel=0.05) and spread == pytest.approx(0.1, rel=0.4)
    assert _at(profile, "unknown", workday_noon) == (None, None)


def test_a_kind_of_day_seen_too_rarely_is_judged_by_the_pooled_hour():
    """Hourly ROPs: a window holds 4 weekend ROPs of each hour, too few to profile apart,
    so a weekend noon is judged against every noon of the window."""
    rows = _cells(days=14, rop_minutes=60)
    profile = HourProfile.learn(rows, ["dl_volume_mbit"])
    mean, spread = _at(profile, "busy", START + timedelta(days=5, hours=12))
    assert mean == pytest.approx((10 * 100 + 4 * 40) / 14, rel=0.05)
    assert spread > 20  # both kinds of day in one spread


def test_a_profile_summed_from_days_read_apart_equals_the_profile_of_all_rows():
    rows = _cells(days=9, rop_minutes=15)
    whole = HourProfile.learn(rows, ["dl_volume_mbit", "not_delivered"])
    days = rows.with_columns(pl.col("ts").dt.date().alias("_day")).partition_by("_day")
    by_day = HourProfile.from_sums(hour_sums(d.drop("_day"), ["dl_volume_mbit"]) for d in days)
    assert whole.kpis == ("dl_volume_mbit",)
    for a, b in ((whole.table, by_day.table), (whole.pooled, by_day.pooled)):
        assert a.columns == b.columns and a.height == b.height
        for column in a.columns:
            if a[column].dtype == pl.Float32:
                assert np.allclose(a[column].to_numpy(), b[column].to_numpy(), rtol=1e-5)
            else:
                assert a[column].equals(b[column])


@pytest.mark.parametrize("rop_minutes", [15, 60])
def test_a_row_left_out_is_judged_against_the_profile_of_the_other_days(rop_minutes):
    """Cross-fitted: each row against the profile learned without its own cell-day, as if
    that day were new (on days apart and pooled alike)."""
    rows = _cells(days=14, rop_minutes=rop_minutes)
    profile = HourProfile.learn(rows, ["dl_volume_mbit"])
    left_out = profile.lookup_leaving_out(rows)
    for when in (START + timedelta(days=3, hours=12), START + timedelta(days=6, hours=12)):
        others = rows.filter(pl.col("ts").dt.date() != when.date())
        want = _at(HourProfile.learn(others, ["dl_volume_mbit"]), "busy", when)
        row = rows.with_row_index().filter((pl.col("cell_id") == "busy") & (pl.col("ts") == when))
        got = left_out.row(row["index"][0])
        assert got == pytest.approx(want, rel=1e-4)
        assert got != pytest.approx(_at(profile, "busy", when), rel=1e-4)
