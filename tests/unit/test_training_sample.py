"""Training data sampled while reading: reproducible, stratified by cell and day, bounded."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from cellpulse.features import store
from cellpulse.features.spec import FeatureParams, default_spec
from cellpulse.features.store import (
    SamplePlan,
    build_day,
    ingested_days,
    read_cell_kpis,
    read_features,
    read_training_sample,
)
from cellpulse.features.targets import LABEL_KPIS
from cellpulse.ingest import ingest_files
from cellpulse.models.families import anomaly as anomaly_family
from cellpulse.models.families import congestion as congestion_family
from cellpulse.models.params import ModelParams
from cellpulse.simulator import SimulationConfig, write_network
from cellpulse.window import DayWindow
from tests.conftest import tiny_settings

NOW = datetime(2026, 2, 1, tzinfo=UTC)
CELLS, DAYS, ROPS = 30, 6, 96


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """A 30-cell, 6-day network ingested and its features built: (settings, spec, days,
    simulation)."""
    settings = tiny_settings(tmp_path_factory.mktemp("sample") / "home")
    cfg = SimulationConfig(cells=CELLS, days=DAYS, seed=5, events_per_cell_day=0.05)
    sim = write_network(
        cfg, settings.layout.landing, settings.layout.ground_truth, settings.congestion
    )
    ingest_files([settings.layout.landing], settings, NOW)
    spec = default_spec(15)
    days = ingested_days(settings.layout, DayWindow())
    params = FeatureParams.of(settings)
    for day in days:
        build_day(settings.layout, spec, day, params)
    return settings, spec, days, sim


def plan(**changes) -> SamplePlan:
    base = {"holdout_days": 2, "max_rows": 3000, "max_cells": 20, "holdout_cells": 8, "seed": 1}
    return SamplePlan(**(base | changes))


def test_same_seed_same_sample_and_another_seed_another(lake):
    settings, spec, days, _ = lake
    first = read_training_sample(settings.layout, days, spec, plan())
    again = read_training_sample(settings.layout, days, spec, plan())
    other = read_training_sample(settings.layout, days, spec, plan(seed=2))
    assert first.features.equals(again.features)
    assert first.cells == again.cells
    assert set(other.cells) != set(first.cells)
    assert not first.features.select("cell_id", "ts").equals(other.features.select("cell_id", "ts"))


def test_a_row_is_drawn_from_its_cell_and_time_alone():
    """Whichever file or row group a row is read in, its draw is the same."""
    ts = pl.Series([datetime(2026, 1, 5, h, tzinfo=UTC) for h in range(4)])
    keys = np.array([7, 7, 8, 8], dtype=np.uint64)
    draws = store.row_draws(keys, ts)
    assert np.array_equal(draws[2:], store.row_draws(keys[2:], ts[2:]))
    assert len(set(draws.tolist())) == 4 and ((draws >= 0) & (draws < 1)).all()


def test_the_sample_keeps_every_day_and_each_chosen_cell_in_proportion(lake):
    settings, spec, days, _ = lake
    sample = read_training_sample(settings.layout, days, spec, plan())
    feats, summary = sample.features, sample.summary
    fit_days, holdout_days = days[:-2], days[-2:]
    fit = feats.filter(pl.col("ts").dt.date().is_in(fit_days))
    available = 20 * ROPS * len(fit_days)
    rate = 3000 / available
    assert summary.of_cells == CELLS and summary.cells == 20 and len(sample.cells) == 20
    assert summary.of_rows == CELLS * ROPS * len(fit_days)
    assert summary.rows == fit.height and 0.9 * 3000 <= fit.height <= 3000
    assert set(fit["cell_id"].unique()) == set(sample.cells)  # no other cell is read
    per_day = fit.group_by(pl.col("ts").dt.date()).len()["len"]
    assert per_day.len() == len(fit_days)
    # Every day keeps its share of the rate (binomial: 1920 rows at ~0.39, sd ~21).
    assert ((per_day - rate * 20 * ROPS).abs() < 120).all()
    per_cell = fit.group_by("cell_id").len()["len"]
    assert ((per_cell - rate * ROPS * len(fit_days)).abs() < 60).all()
    # The hold-out: whole days of cells among the chosen ones, for alerts' consecutive ROPs.
    held = feats.filter(pl.col("ts").dt.date().is_in(holdout_days))
    assert set(held["cell_id"].unique()) < set(sample.cells)
    assert held["cell_id"].n_unique() == summary.holdout_cells == 8
    assert held.height == summary.holdout_rows == 8 * ROPS * 2
    assert summary.describe().startswith(f"sampled {fit.height:,} of {summary.of_rows:,} ")


def test_a_small_network_is_read_whole(lake):
    settings, spec, days, _ = lake
    everything = read_features(settings.layout, DayWindow(), spec)
    sample = read_training_sample(
        settings.layout, days, spec, plan(max_rows=10**6, max_cells=100, holdout_cells=100)
    )
    keys = ["cell_id", "ts"]
    assert sample.features.sort(keys).equals(everything.sort(keys))
    assert sample.summary.rows + sample.summary.holdout_rows == CELLS * ROPS * DAYS


def test_the_reader_decodes_a_column_of_a_row_group_at_a_time(lake, monkeypatch):
    settings, spec, days, _ = lake
    reads: list[tuple[int, int]] = []  # (columns, rows) of each decode
    decode = pq.ParquetFile.read_row_group

    def recording(self, i, columns=None, **kwargs):
        table = decode(self, i, columns=columns, **kwargs)
        reads.append((table.num_columns, table.num_rows))
        return table

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", recording)
    sample = read_training_sample(settings.layout, days, spec, plan(max_rows=1000))
    # Beyond the sample, the reader holds the keys of one row group or one of its columns,
    # never a row group (let alone a day) of every column.
    assert reads and max(columns for columns, _ in reads) <= 2
    width = sample.features.width
    assert sum(rows for columns, rows in reads if columns == 1) <= width * CELLS * ROPS * DAYS
    per_day = sample.features.group_by(pl.col("ts").dt.date()).len()["len"]
    assert per_day.max() < CELLS * ROPS / 2


def test_kpis_are_read_for_the_chosen_cells_only(lake):
    settings, spec, days, _ = lake
    sample = read_training_sample(settings.layout, days, spec, plan())
    kpis = read_cell_kpis(settings.layout, days, sample.cells, LABEL_KPIS)
    assert sorted(kpis["cell_id"].unique()) == sample.cells
    assert kpis.columns == ["cell_id", "ts", *LABEL_KPIS]
    whole = settings.layout.kpi.read().filter(pl.col("cell_id").is_in(sample.cells))
    expected = whole.select(kpis.columns).sort("cell_id", "ts")
    assert kpis.sort("cell_id", "ts").equals(expected)


def test_both_families_train_on_a_sample(lake):
    settings, spec, days, sim = lake
    sample = read_training_sample(settings.layout, days, spec, plan(max_rows=4000))
    kpis = read_cell_kpis(settings.layout, days, sample.cells, LABEL_KPIS)
    params = ModelParams.of(settings)
    anomaly = anomaly_family.train_anomaly(sample.features, sim.events, params, spec.hash())
    congestion = congestion_family.train_congestion(sample.features, kpis, params, spec.hash())
    for candidate in (anomaly, congestion):
        assert candidate.split.holdout["cell_id"].n_unique() == 8
        assert candidate.split.train.height == sample.summary.rows
    assert 0 < congestion.metrics["val_pr_auc"] <= 1
    assert 0 < anomaly.metrics["val_pr_auc"] <= 1  # judged on the labelled faults it holds


def test_every_cell_gets_its_hour_profile_of_the_fitting_days_whatever_the_sample(lake):
    """Training fits on a sample of cells, but every cell of the network is judged against
    its own profile: the train flow learns it from every cell's rows of the days before
    the hold-out, a day and a few columns at a time, as if read whole."""
    from cellpulse.flows.train import learn_hour_profile
    from cellpulse.models.anomaly import TARGETS
    from cellpulse.models.profile import HourProfile

    settings, spec, days, _ = lake
    sample = read_training_sample(settings.layout, days, spec, plan(max_cells=10))
    assert len(sample.cells) == 10
    profile = learn_hour_profile.fn(settings, DayWindow(), spec)
    fitting = days[: -settings.train.holdout_days]
    whole = read_features(settings.layout, DayWindow(fitting[0], fitting[-1]), spec)
    expected = HourProfile.learn(whole, [t.name for t in TARGETS])
    assert profile is not None and profile.cells == CELLS
    assert profile.kpis == expected.kpis and len(profile.kpis) >= 5
    for got, want in ((profile.table, expected.table), (profile.pooled, expected.pooled)):
        assert got.select("cell_id", "_hour").equals(want.select("cell_id", "_hour"))
        for column in got.columns[2:]:
            assert np.allclose(
                got[column].cast(pl.Float64).to_numpy(),
                want[column].cast(pl.Float64).to_numpy(),
                rtol=1e-5,
                equal_nan=True,
            )
    assert learn_hour_profile.fn(settings, DayWindow(days[-1], days[-1]), spec) is None
