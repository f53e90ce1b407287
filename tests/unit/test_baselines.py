from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from cellpulse.models.anomaly import TargetKpi
from cellpulse.models.baselines import hour_zscore_baseline, zscore_baseline, zscore_detector
from cellpulse.models.params import ModelParams
from tests.conftest import tiny_settings

T0 = datetime(2026, 1, 5, tzinfo=UTC)
HOUR = timedelta(hours=1)
VOLUME = (TargetKpi("dl_volume_mbit", "low", 50.0),)


def busy_days(days: int, seed: int) -> pl.DataFrame:
    """One cell, hourly: 1000 Mbit from 08:00 to 20:00, 100 at night, a little noise."""
    rng = np.random.default_rng(seed)
    ts = [T0 + h * HOUR for h in range(24 * days)]
    level = np.array([1000.0 if 8 <= t.hour < 20 else 100.0 for t in ts])
    return pl.DataFrame(
        {"cell_id": "c", "ts": ts, "dl_volume_mbit": level + rng.normal(0, 10, len(ts))}
    )


def test_a_busy_hour_drop_stands_out_against_that_hour_not_the_whole_day():
    train = busy_days(7, seed=1)
    test = busy_days(1, seed=2).with_columns(ts=pl.col("ts") + timedelta(days=7))
    test = test.with_columns(  # noon to 15:00 the cell carries what it carries at night
        pl.when(pl.col("ts").dt.hour().is_between(12, 14))
        .then(100.0)
        .otherwise(pl.col("dl_volume_mbit"))
        .alias("dl_volume_mbit")
    )
    hourly = hour_zscore_baseline(train, test, VOLUME).to_numpy()
    flat = zscore_baseline(train, test, VOLUME).to_numpy()
    drop = test["ts"].dt.hour().is_between(12, 14).to_numpy()
    # Against the hour: ~900 / 50 (the spread floor) = 18 spreads down; against the whole
    # day's spread (~440) the same drop is ~1.2, under the z-score's alert threshold of 3.
    assert hourly[drop].min() > 15 and flat[drop].max() < 3
    # Quiet nights are normal for their hour.
    assert hourly[~drop].max() < 1


def test_the_hour_of_day_detector_alerts_on_the_drop_the_flat_one_misses(tmp_path):
    params = replace(ModelParams.of(tiny_settings(tmp_path)), rop_minutes=60)
    train = busy_days(7, seed=1)
    test = busy_days(1, seed=2).with_columns(ts=pl.col("ts") + timedelta(days=7))
    test = test.with_columns(
        pl.when(pl.col("ts").dt.hour().is_between(10, 17))
        .then(100.0)
        .otherwise(pl.col("dl_volume_mbit"))
        .alias("dl_volume_mbit")
    )
    hourly = zscore_detector(train, test, params, by_hour=True)
    flat = zscore_detector(train, test, params)
    assert hourly["is_anomaly"].sum() == 8 - 2  # alerts from the third ROP of the drop on
    assert flat["is_anomaly"].sum() == 0
