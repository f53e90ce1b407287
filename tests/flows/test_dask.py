"""Scale-out on Dask: features and scores fanned out over days on a LocalCluster of worker
processes are the same as the single-process path's (features and the expected band bit for
bit, scores equal apart from the time they were made)."""

from __future__ import annotations

import shutil

import polars as pl

from cellpulse.features.store import expected_dataset, feature_dataset, score_dataset
from cellpulse.flows.features import features_flow
from cellpulse.flows.pipeline import pipeline_flow
from cellpulse.flows.score import score_flow
from cellpulse.simulator import build_topology, write_network
from tests.conftest import TINY, outage_events, tiny_settings


def outputs(settings) -> dict[str, pl.DataFrame]:
    return {
        "features": feature_dataset(settings).read().sort("cell_id", "ts"),
        "scores": score_dataset(settings).read().drop("scored_at").sort("cell_id", "ts"),
        "expected": expected_dataset(settings).read().sort("cell_id", "ts"),
    }


def test_dask_fan_out_gives_the_single_process_results(tmp_path):
    single = tiny_settings(tmp_path / "home")
    events = outage_events(build_topology(TINY))
    write_network(TINY, single.landing_dir, single.truth_dir, single.congestion, events)
    pipeline_flow(single)
    before = outputs(single)
    days = feature_dataset(single).dates()

    for name in ("features", "scores", "expected"):
        shutil.rmtree(single.lake_dir / name)
    on_dask = single.model_copy(update={"dask_address": "local", "dask_workers": 2})
    built = features_flow(on_dask, days[0], days[-1])
    assert built is not None and built.days == days
    scored = score_flow(on_dask, days)
    assert scored.rows == before["scores"].height

    after = outputs(single)
    for name, table in before.items():
        assert after[name].equals(table), name
