"""Anomaly alerts on several simulated worlds: false alarms per 100 cell-days and event
recall of the anomaly model (unsupervised: an operator's network comes without labels) next
to the per-cell z-score, per world and on their mean.

    python -m bench.anomaly_worlds --seeds 101 102 --out /tmp/worlds.json

Each world: `--cells` cells, 21 days, 10 % traffic growth a month, faults at twice the
simulator's default rate with slow degradations as likely as outages; the model trains on
the first 14 days and is judged on the last 7. The KPI subset and ROP length vary per world
(all at 15 minutes, PRB + volume and volume + users at 60). Tune on other seeds than the
ones reported.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import polars as pl

from cellpulse.features.builder import build_features
from cellpulse.features.spec import default_spec
from cellpulse.models import evaluation
from cellpulse.models.anomaly import AnomalyModel
from cellpulse.models.baselines import zscore_detector
from cellpulse.models.families.anomaly import anomaly_params, score_anomaly
from cellpulse.models.params import ModelParams
from cellpulse.settings import Settings, TrainSettings
from cellpulse.simulator import (
    EVENT_TYPES,
    KPI_PRESETS,
    SimulationConfig,
    build_topology,
    draw_events,
    iter_days,
)

WORLDS = (("all", 15), ("prb_volume", 60), ("volume_users", 60))
# The faults a KPI subset can show: volume and PRB or users do not see a failing handover.
VISIBLE = {
    "all": None,
    "prb_volume": ("outage", "sleeping_cell", "stuck_counters", "gradual_degradation"),
    "volume_users": ("outage", "sleeping_cell", "stuck_counters", "gradual_degradation"),
}
TRAIN_DAYS = 14
DAYS = 21


def world(preset: str, rop: int, seed: int, cells: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    weights = {"gradual_degradation": 1.0, "surge": 1.5}
    if VISIBLE[preset] is not None:  # only faults the subset can show, so there are some
        weights = {t: (1.0 if t in VISIBLE[preset] else 0.0) for t in EVENT_TYPES}
        weights |= {"surge": 1.5, "gradual_degradation": 1.0}
    cfg = SimulationConfig(
        cells=cells,
        days=DAYS,
        seed=seed,
        rop_minutes=rop,
        kpis=None if preset == "all" else KPI_PRESETS[preset],
        events_per_cell_day=0.024,
        growth_per_month=0.10,
    )
    cfg = replace(cfg, event_weights={**cfg.event_weights, **weights})
    topo = build_topology(cfg)
    events = draw_events(topo, cfg)
    kpis = pl.concat([day for _, day in iter_days(cfg, topo, events)])
    feats = build_features(kpis, default_spec(rop), rop_minutes=rop, min_denominator=10)
    return feats, events


def measure(
    preset: str, rop: int, seed: int, cells: int, budget: float, before: bool = False
) -> dict[str, object]:
    t0 = time.time()
    feats, events = world(preset, rop, seed, cells)
    settings = Settings(
        rop_minutes=rop,
        train=TrainSettings(supervised="off", n_jobs=1),
        alerts={"false_alarms_per_100_cell_days": None if before else budget},
    )
    params = ModelParams.of(settings)
    start = feats["ts"].min()
    cut = datetime(start.year, start.month, start.day, tzinfo=UTC) + timedelta(days=TRAIN_DAYS)
    train = feats.filter(pl.col("ts") < cut)
    hold = feats.filter(pl.col("ts") >= cut).sort("cell_id", "ts")
    model = AnomalyModel.fit(train, "bench", anomaly_params(params.train, params.alerts))
    if before:
        model.change_scale = pl.DataFrame()
    scored = score_anomaly(model, hold, params)
    held_events = evaluation.events_in(events, hold["ts"].min(), hold["ts"].max())
    visible = VISIBLE[preset]
    if visible is not None:  # faults the data cannot show are neither found nor false alarms
        held_events = held_events.filter(
            (pl.col("kind") != "fault") | pl.col("type").is_in(list(visible))
        )
    out: dict[str, object] = {"world": f"{preset}/{rop}m/seed{seed}", "threshold": model.threshold}
    for name, flagged in (("model", scored), ("zscore", zscore_detector(train, hold, params))):
        m = evaluation.detection_metrics(
            flagged, held_events, rop, params.alerts.clear_after_rops, 20, with_ranking=False
        )
        found = evaluation.found_events(flagged, evaluation.fault_events(held_events), rop)
        by_type = found.group_by("type").agg(pl.col("found").sum(), pl.len()).sort("type")
        out[name] = {
            "fa100": round(m["false_alarms_per_100_cell_days"], 2),
            "recall": round(m["event_recall"], 3),
            "alerts": m["alerts"],
            "precision": round(m["alert_precision"], 3),
            "delay": m["median_detection_delay_rops"],
            "outage_delay": found.filter(pl.col("type") == "outage")["delay_rops"].max(),
            "found": {r["type"]: f"{r['found']}/{r['len']}" for r in by_type.iter_rows(named=True)},
        }
    if "alert_cause" in scored.columns:
        out["causes"] = dict(scored.filter("is_anomaly")["alert_cause"].value_counts().rows())
    out["seconds"] = round(time.time() - t0, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102])
    parser.add_argument("--cells", type=int, default=150)
    parser.add_argument("--out")
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument(
        "--before", action="store_true", help="the earlier model: quantile threshold, no levels"
    )
    args = parser.parse_args()
    results = []
    for seed in args.seeds:
        for preset, rop in WORLDS:
            r = measure(preset, rop, seed, args.cells, args.budget, args.before)
            print(json.dumps(r), flush=True)
            results.append(r)
    for name in ("model", "zscore"):
        fa = [r[name]["fa100"] for r in results]  # type: ignore[index]
        rec = [r[name]["recall"] for r in results]  # type: ignore[index]
        print(
            f"{name}: mean FA/100 cell-days {sum(fa) / len(fa):.2f} (worst {max(fa):.2f}), "
            f"mean recall {sum(rec) / len(rec):.3f} (worst {min(rec):.3f})"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
