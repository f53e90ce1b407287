"""Quality on many simulated worlds, next to naive detectors.

Each world (cellpulse.simulator.worlds) is simulated small, then taken through the pipeline
in-process (no Prefect, no MLflow): landing files ingested, features built day by day, both
model families fitted as `cellpulse train` fits them (the family's own `fit`), the held-out
newest days scored and measured against the world's truth. Two modes: `--labels on` trains
with the world's ground truth of the training days as labels (the supervised blend on);
`--labels off` trains without any (an operator's network rarely comes with labels: the
supervised classifier is off and known faults are not left out of the fit). Next to
them: the per-cell z-score and the per-cell hour-of-day z-score (anomaly), persistence and
the current PRB utilisation / 100 (congestion).

Reported worlds have seeds 1..N; the tuning worlds (seeds 1001..) are for choosing settings
and are never the ones reported."""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from bench.common import record_table
from cellpulse.errors import NoDataError
from cellpulse.features.spec import FeatureParams
from cellpulse.features.store import build_day, lake_spec, read_features
from cellpulse.ingest import ingest_files
from cellpulse.models import evaluation
from cellpulse.models.baselines import zscore_detector
from cellpulse.models.boosting import train_local
from cellpulse.models.families.anomaly import score_anomaly
from cellpulse.models.family import family
from cellpulse.models.params import ModelParams
from cellpulse.models.training import Candidate, TrainingData
from cellpulse.settings import Settings, TrainSettings
from cellpulse.simulator import FAULT_TYPES, World, draw_world, write_network
from cellpulse.window import DayWindow

REPORTED_WORLDS = 20
TUNING_FIRST_SEED = 1001
BUDGET = 0.5  # false alarms per 100 cell-days: the goal
GOAL_RECALL = 0.8
ANOMALY = {"model": "cellpulse", "zscore": "per-cell z-score", "hour_zscore": "hour-of-day z"}
CONGESTION = {"model": "cellpulse", "persistence": "persistence", "prb_util": "PRB util / 100"}
SUBSETS = {"all": "all KPIs", "prb_volume": "PRB + volume", "volume_users": "volume + users"}


def world_seeds(count: int, tuning: bool) -> list[int]:
    """The seeds of the reported worlds (1..count) or of the tuning worlds (1001..)."""
    first = TUNING_FIRST_SEED if tuning else 1
    return list(range(first, first + count))


LABELS = ("on", "off")


def world_settings(
    world: World, home: Path, train: TrainSettings | None = None, labels: str = "on"
) -> Settings:
    """An installation for the world: its ROP, its holidays (operators know theirs), its
    scored days held out; without labels, no supervised classifier."""
    base = train or TrainSettings()
    if labels == "off":
        base = base.model_copy(update={"supervised": "off"})
    return Settings(
        home=home,
        rop_minutes=world.config.rop_minutes,  # type: ignore[arg-type]
        holidays=list(world.config.holidays),
        train=base.model_copy(update={"holdout_days": world.scored_days}),
    )


@dataclass(frozen=True)
class Prepared:
    """A world taken through ingest and features: what training reads."""

    settings: Settings
    data: TrainingData
    spec_hash: str


def prepare(
    world: World, root: Path, train: TrainSettings | None = None, labels: str = "on"
) -> Prepared:
    """Simulate the world into landing files, ingest them, build every day's features."""
    settings = world_settings(world, root / "home", train, labels)
    cfg = world.config
    summary = write_network(cfg, root / "landing", root / "truth", settings.congestion)
    now = datetime.combine(cfg.start + timedelta(days=cfg.days + 1), datetime.min.time(), UTC)
    ingest_files([root / "landing"], settings, now)
    layout, params = settings.layout, FeatureParams.of(settings)
    spec = lake_spec(layout, params)
    days = layout.kpi.dates()
    for day in days:
        build_day(layout, spec, day, params)
    features = read_features(layout, DayWindow(days[0], days[-1]), spec)
    kpis = layout.kpi.read(days[0], days[-1])
    return Prepared(settings, TrainingData(features, kpis, summary.events), spec.hash())


def anomaly_detectors(candidate: Candidate, params: ModelParams) -> dict[str, pl.DataFrame]:
    """Each detector's flagged held-out ROPs (cell_id, ts, anomaly_score, is_anomaly)."""
    split = candidate.split
    holdout = split.holdout.sort("cell_id", "ts")
    cols = ["cell_id", "ts", "anomaly_score", "is_anomaly"]
    return {
        "model": score_anomaly(candidate.model, holdout, params).select(*cols, "anomaly_kpis"),
        "zscore": zscore_detector(split.train, holdout, params),
        "hour_zscore": zscore_detector(split.train, holdout, params, by_hour=True),
    }


def anomaly_metrics(
    flagged: pl.DataFrame, events: pl.DataFrame, params: ModelParams
) -> dict[str, float]:
    """One detector on one world: at its own threshold, at the false-alarm budget, and per
    fault type at the budget (found and events, to pool over worlds)."""
    rop, clear, consecutive = (
        params.rop_minutes,
        params.alerts.clear_after_rops,
        params.alerts.consecutive_rops,
    )
    flagged = flagged.sort("cell_id", "ts")
    own = evaluation.detection_metrics(flagged, events, rop, clear, k=1, with_ranking=False)
    budget = evaluation.recall_at_budget(flagged, events, BUDGET, rop, consecutive, clear)
    out = {
        "event_recall": own["event_recall"],
        "alert_precision": own["alert_precision"],
        "false_alarms_per_100_cell_days": own["false_alarms_per_100_cell_days"],
        "median_delay_minutes": own["median_detection_delay_rops"] * rop,
        "recall_at_budget": budget["event_recall"],
        "precision_at_budget": budget["alert_precision"],
        "delay_at_budget_minutes": budget["median_detection_delay_rops"] * rop,
    }
    faults = evaluation.fault_events(events)
    if faults is not None and "type" in faults.columns:
        found_own = evaluation.found_events(flagged, faults, rop)
        outages = found_own.filter((pl.col("type") == "outage") & pl.col("found"))
        if outages.height:
            out["outage_delay_minutes"] = float(outages["delay_rops"].max()) * rop  # type: ignore[arg-type]
        at_budget = evaluation.flagged_at(flagged, budget["threshold"], consecutive, rop)
        found = evaluation.found_events(at_budget, faults, rop)
        for kind in FAULT_TYPES:
            typed = found.filter(pl.col("type") == kind)
            if typed.height:
                out[f"events.{kind}"] = float(typed.height)
                out[f"found.{kind}"] = float(typed["found"].sum())
    return out


def false_alarm_drivers(
    flagged: pl.DataFrame, events: pl.DataFrame, params: ModelParams
) -> dict[str, float]:
    """The false alarms at the detector's own threshold by what the alert named first at
    its highest score (`anomaly_kpis`; "none" when it named nothing): `fa.<kpi>` counts."""
    spans = evaluation.alert_spans(flagged, params.alerts.clear_after_rops, params.rop_minutes)
    if spans.is_empty():
        return {}
    real = evaluation.real_events(events)
    false = (
        spans.join(
            real.select("cell_id", pl.col("start").alias("es"), pl.col("end").alias("ee")),
            on="cell_id",
            how="left",
        )
        .group_by("cell_id", "start", "end")
        .agg(((pl.col("start") < pl.col("ee")) & (pl.col("es") < pl.col("end"))).any().alias("hit"))
    )
    false = false.filter(~pl.col("hit").fill_null(False))
    rows = flagged.filter("is_anomaly").join(false, on="cell_id")
    rows = rows.filter((pl.col("ts") >= pl.col("start")) & (pl.col("ts") < pl.col("end")))
    first = (
        rows.sort("anomaly_score", descending=True)
        .group_by("cell_id", "start", maintain_order=True)
        .agg(pl.col("anomaly_kpis").first().list.first().fill_null("none").alias("kpi"))
    )
    return {f"fa.{k}": float(n) for k, n in first["kpi"].value_counts().rows()}


def scored_events(events: pl.DataFrame, lo: datetime, hi: datetime) -> pl.DataFrame:
    """The events of the scored ROPs `lo`..`hi`, those under way before `lo` counted from
    `lo` (their delay is how long the detector takes once it is scoring, not how long the
    event ran before the window)."""
    return evaluation.events_in(events, lo, hi).with_columns(
        pl.when(pl.col("start") < lo).then(pl.lit(lo)).otherwise(pl.col("start")).alias("start")
    )


def congestion_metrics(candidate: Candidate) -> dict[str, float]:
    """PR-AUC of the congestion model and of the naive forecasts, on its hold-out."""
    return {
        "model": candidate.metrics["val_pr_auc"],
        "persistence": candidate.baselines.get("baseline_persistence_pr_auc", math.nan),
        "prb_util": candidate.baselines.get("baseline_prb_util_pr_auc", math.nan),
    }


def measure_world(
    world: World, root: Path, train: TrainSettings | None = None, labels: str = "on"
) -> dict[str, float]:
    """A world's figures, flat: `anomaly.<detector>.<metric>`, `congestion.<detector>.pr_auc`,
    and what was scored (`cell_days`, `events`). With `labels` "off" the anomaly model
    trains without the world's truth."""
    prepared = prepare(world, root, train, labels)
    params = ModelParams.of(prepared.settings)
    data = prepared.data
    out: dict[str, float] = {}
    fitting = data if labels == "on" else TrainingData(data.features, data.kpis, None)
    anomaly = family("anomaly").fit(fitting, params, prepared.spec_hash, train_local)
    holdout = anomaly.split.holdout
    lo, hi = holdout["ts"].min(), holdout["ts"].max()
    assert isinstance(lo, datetime) and isinstance(hi, datetime)
    assert data.events is not None
    events = scored_events(data.events, lo, hi)
    out["cell_days"] = holdout.height * params.rop_minutes / 1440
    fault_events = evaluation.fault_events(events)
    out["events"] = float(fault_events.height if fault_events is not None else 0)
    for name, flagged in anomaly_detectors(anomaly, params).items():
        for metric, value in anomaly_metrics(flagged, events, params).items():
            out[f"anomaly.{name}.{metric}"] = value
        if name == "model":
            for metric, value in false_alarm_drivers(flagged, events, params).items():
                out[f"anomaly.model.{metric}"] = value
    try:
        congestion = family("congestion").fit(data, params, prepared.spec_hash, train_local)
        for name, value in congestion_metrics(congestion).items():
            out[f"congestion.{name}.pr_auc"] = value
    except NoDataError:
        pass  # no congestion (or no KPI to define it) in this world: nothing to forecast
    return out


# ---------------------------------------------------------------------------- the table

# Metric, its label, and whether more is better (the worst world is the lowest then).
ANOMALY_ROWS = (
    ("event_recall", "event recall", True),
    ("alert_precision", "alert precision", True),
    ("false_alarms_per_100_cell_days", "false alarms / 100 cell-days", False),
    ("median_delay_minutes", "median delay (min)", False),
    ("recall_at_budget", f"recall at {BUDGET} FA / 100 cell-days", True),
    ("precision_at_budget", f"precision at {BUDGET} FA / 100 cell-days", True),
    ("delay_at_budget_minutes", f"median delay at {BUDGET} FA / 100 cell-days (min)", False),
    ("outage_delay_minutes", "slowest outage alert, own threshold (min)", False),
)


def _mean_worst(values: list[float], higher_is_better: bool) -> str:
    ok = [v for v in values if not math.isnan(v)]
    if not ok:
        return "n/a"
    worst = min(ok) if higher_is_better else max(ok)
    return f"{np.mean(ok):.2f} ({worst:.2f})"


def table(results: Sequence[tuple[World, dict[str, float]]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per metric, one column per detector, each cell the mean
    over the worlds and, in brackets, the worst world; per fault type the recall pooled
    over the worlds (found / events) and the worst world's."""
    header = ["metric", *ANOMALY.values(), *list(CONGESTION.values())[1:]]
    blank = [""] * (len(CONGESTION) - 1)
    rows = []
    for key, label, up in ANOMALY_ROWS:
        cells = [
            _mean_worst([m.get(f"anomaly.{d}.{key}", math.nan) for _, m in results], up)
            for d in ANOMALY
        ]
        rows.append([label, *cells, *blank])
    for kind in FAULT_TYPES:
        having = [m for _, m in results if f"anomaly.model.events.{kind}" in m]
        if not having:
            continue
        events = sum(m[f"anomaly.model.events.{kind}"] for m in having)
        cells = []
        for d in ANOMALY:
            found = [m[f"anomaly.{d}.found.{kind}"] for m in having]
            worst = min(
                f / m[f"anomaly.{d}.events.{kind}"] for f, m in zip(found, having, strict=True)
            )
            cells.append(f"{sum(found) / events:.2f} ({worst:.2f})")
        rows.append([f"recall at budget: {kind} ({events:.0f} events)", *cells, *blank])
    cell_days = sum(m["cell_days"] for _, m in results)
    drivers = sorted({k[len("anomaly.model.fa.") :] for _, m in results for k in m if ".fa." in k})
    for kpi in drivers:
        false = sum(m.get(f"anomaly.model.fa.{kpi}", 0.0) for _, m in results)
        rows.append(
            [f"false alarms / 100 cell-days naming {kpi} first", f"{100 * false / cell_days:.2f}"]
            + [""] * (len(ANOMALY) - 1)
            + blank
        )
    pr = {d: [m.get(f"congestion.{d}.pr_auc", math.nan) for _, m in results] for d in CONGESTION}
    rows.append(
        [
            "congestion PR-AUC",
            _mean_worst(pr["model"], True),
            "",
            "",
            *(_mean_worst(pr[d], True) for d in list(CONGESTION)[1:]),
        ]
    )
    return header, rows


def summary_line(results: Sequence[tuple[World, dict[str, float]]]) -> str:
    """What the table covers."""
    cell_days = sum(m["cell_days"] for _, m in results)
    events = sum(m["events"] for _, m in results)
    rops = sorted({w.config.rop_minutes for w, _ in results})
    return (
        f"{len(results)} worlds (seeds {', '.join(str(w.seed) for w, _ in results)}), "
        f"{cell_days:,.0f} cell-days and {events:.0f} fault events scored, ROPs "
        f"{'/'.join(map(str, rops))} min"
    )


def run(
    seeds: Sequence[int],
    root: Path,
    train: TrainSettings | None = None,
    resize: Callable[[World], World] | None = None,
    log: Callable[[str], None] = print,
    labels: str = "on",
) -> list[tuple[World, dict[str, float]]]:
    """Measure the worlds of `seeds` (`resize`d, e.g. smaller for a test), each in its own
    folder under `root`, trained with (`labels` "on") or without the worlds' truth."""
    results = []
    for seed in seeds:
        world = draw_world(seed)
        if resize is not None:
            world = resize(world)
        t0 = time.perf_counter()
        metrics = measure_world(world, root / f"world-{seed}", train, labels)
        log(
            f"{world.describe()}\n  {time.perf_counter() - t0:.0f} s; cellpulse recall "
            f"{metrics['anomaly.model.event_recall']:.2f}, FA "
            f"{metrics['anomaly.model.false_alarms_per_100_cell_days']:.2f}, recall at budget "
            f"{metrics['anomaly.model.recall_at_budget']:.2f}; hour-of-day z at budget "
            f"{metrics['anomaly.hour_zscore.recall_at_budget']:.2f}"
        )
        results.append((world, metrics))
    return results


def main(
    worlds: int = REPORTED_WORLDS, tuning: bool = False, labels: str = "on", out: str | None = None
) -> None:
    seeds = world_seeds(worlds, tuning)
    which = "tuning" if tuning else "reported"
    with tempfile.TemporaryDirectory(prefix="cellpulse-quality-") as tmp:
        results = run(seeds, Path(tmp), labels=labels)
    if out:  # every world's figures, to compare runs world by world
        Path(out).write_text(json.dumps({str(w.seed): m for w, m in results}, indent=1))
    command = "python -m bench.run quality" + (f" --worlds {worlds}" if worlds != 20 else "")
    command += " --tuning" if tuning else ""
    command += f" --labels {labels}"
    trained = (
        "the world's ground truth of the training days as labels"
        if labels == "on"
        else "no labels: unsupervised, known faults not left out"
    )
    notes = (
        f"{which.capitalize()} worlds. Each cell: mean over the worlds (worst world in "
        "brackets); per fault type, recall pooled over the worlds' events (worst world in "
        "brackets). Anomaly detectors alert as the pipeline does (consecutive ROPs, alert "
        "spans); at their own threshold (cellpulse: its fitted threshold; z-scores: 3) and "
        f"at the threshold that spends {BUDGET} false alarms per 100 cell-days on each "
        "world. A false alarm is an alert that overlaps no labelled event (a planned "
        "capacity or traffic change is not an event). cellpulse is trained as `cellpulse "
        f"train` trains (default settings, {trained}). Goal: <= {BUDGET} false "
        "alarms per 100 cell-days at event "
        f"recall >= {GOAL_RECALL} on the mean world. Settings are chosen on the tuning "
        f"worlds (seeds {TUNING_FIRST_SEED}.., `--tuning`), never on these (seeds 1..)."
    )
    record = not tuning and worlds >= REPORTED_WORLDS
    groups = [("every world", results)] + [
        (label, [(w, m) for w, m in results if w.kpi_subset == subset])
        for subset, label in SUBSETS.items()
    ]
    for label, part in groups:
        if not part:
            continue
        header, rows = table(part)
        section = f"Quality, labels {labels}: {label}"
        text = f"{summary_line(part)}. {notes}"
        if record:
            record_table(section, command, header, rows, text)
        else:
            print(f"## {section} ({which} worlds, not recorded)\n")
            print("| " + " | ".join(header) + " |")
            print("\n".join("| " + " | ".join(r) + " |" for r in rows))
            print(f"\n{text}\n")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run quality")
    parser.add_argument("--worlds", type=int, default=REPORTED_WORLDS, help="worlds to run")
    parser.add_argument("--tuning", action="store_true", help="the tuning worlds instead")
    parser.add_argument(
        "--labels",
        choices=LABELS,
        default="on",
        help="train with the worlds' truth as labels (on) or without any (off)",
    )
    parser.add_argument("--out", help="also write every world's figures to this JSON file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse(sys.argv[1:])
    main(args.worlds, args.tuning, args.labels, args.out)
