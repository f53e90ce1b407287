"""Scale-out on Dask: features and scores fanned out over days on a LocalCluster of worker
processes are the same as the single-process path's (features and the expected band bit for
bit, scores equal apart from the time they were made)."""

from __future__ import annotations

import shutil

import polars as pl

from cellpulse.flows.features import features_flow
from cellpulse.flows.pipeline import pipeline_flow
from cellpulse.flows.score import score_flow
from cellpulse.models.params import ModelParams
from cellpulse.simulator import build_topology, write_network
from cellpulse.window import DayWindow
from tests.conftest import TINY, outage_events, tiny_settings


def outputs(settings) -> dict[str, pl.DataFrame]:
    return {
        "features": settings.layout.features.read().sort("cell_id", "ts"),
        "scores": settings.layout.scores.read().drop("scored_at").sort("cell_id", "ts"),
        "expected": settings.layout.expected.read().sort("cell_id", "ts"),
    }


def test_dask_fan_out_gives_the_single_process_results(tmp_path):
    single = tiny_settings(tmp_path / "home")
    events = outage_events(build_topology(TINY))
    write_network(
        TINY, single.layout.landing, single.layout.ground_truth, single.congestion, events
    )
    pipeline_flow(single)
    before = outputs(single)
    days = single.layout.features.dates()

    for name in ("features", "scores", "expected"):
        shutil.rmtree(single.layout.lake / name)
    on_dask = single.model_copy(update={"dask_address": "local", "dask_workers": 2})
    built = features_flow(on_dask, DayWindow(days[0], days[-1]))
    assert built is not None and built.days == days
    scored = score_flow(on_dask, days)
    assert scored.rows == before["scores"].height

    after = outputs(single)
    for name, table in before.items():
        assert after[name].equals(table), name


def test_training_on_dask_agrees_with_local_training(tiny_network, tmp_path):
    """LightGBM's Dask interface (data-parallel over 2 worker processes) fits the same models
    up to its partition-local binning and bagging: predictions correlate >= 0.99 and differ
    by less than 0.02 on average (probabilities) / 10% of the score's spread (anomaly)."""
    import numpy as np
    from distributed import Client, LocalCluster

    from cellpulse.features.builder import build_features
    from cellpulse.features.spec import default_spec
    from cellpulse.models.anomaly import AnomalyModel
    from cellpulse.models.boosting import DaskTrainer
    from cellpulse.models.congestion import CongestionModel
    from cellpulse.models.families.anomaly import anomaly_params
    from cellpulse.models.families.congestion import congestion_labels, congestion_params

    _, _, kpis = tiny_network
    settings = tiny_settings(tmp_path / "home")
    spec = default_spec(TINY.rop_minutes)
    feats = build_features(kpis, spec, rop_minutes=TINY.rop_minutes, min_denominator=10)
    target = congestion_labels(feats, kpis, ModelParams.of(settings))["congested_within"]
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        on_dask = DaskTrainer(client, min_rows=1)
        fits = {
            "local": (
                CongestionModel.fit(feats, target, 60, "s", congestion_params(settings.train)),
                AnomalyModel.fit(feats, "s", anomaly_params(settings.train)),
            ),
            "dask": (
                CongestionModel.fit(
                    feats, target, 60, "s", congestion_params(settings.train), on_dask
                ),
                AnomalyModel.fit(feats, "s", anomaly_params(settings.train), trainer=on_dask),
            ),
        }
    prob = {k: c.predict(feats) for k, (c, _) in fits.items()}
    assert np.corrcoef(prob["local"], prob["dask"])[0, 1] >= 0.99
    assert np.abs(prob["local"] - prob["dask"]).mean() < 0.02
    score = {k: a.score(feats)["anomaly_score"].to_numpy() for k, (_, a) in fits.items()}
    assert np.corrcoef(score["local"], score["dask"])[0, 1] >= 0.99
    assert np.abs(score["local"] - score["dask"]).mean() < 0.1 * score["local"].std()
