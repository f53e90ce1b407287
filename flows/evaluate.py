"""Flow: published scores + ground truth -> the scoreboard (JSON, MLflow, terminal)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from cellpulse import lake
from cellpulse.errors import CellpulseError, NoDataError
from cellpulse.features.spec import spec_for
from cellpulse.features.store import load_events, read_features
from cellpulse.models import tracking
from cellpulse.models.scoreboard import flat_metrics, scoreboard
from cellpulse.settings import Settings


@dataclass(frozen=True)
class Evaluation:
    board: pl.DataFrame
    window: tuple[date, date]
    report: Path
    logged_runs: list[str]
    note: str


def default_window(settings: Settings, scored: list[date]) -> tuple[date, date, str]:
    """Days scored after the champion's training window: the honest hold-out. Falls back to
    every scored day (saying so) when there are none."""
    tracking.configure(settings)
    champ = tracking.champion_run("anomaly")
    train_window = tracking.run_tag(champ[1], "data.train_window") if champ else None
    if train_window:
        train_end = date.fromisoformat(train_window.split("..")[1])
        after = [d for d in scored if d > train_end]
        if after:
            return after[0], after[-1], f"days after the champion's training window ({train_end})"
    return scored[0], scored[-1], "all scored days (some may be training days: optimistic)"


@dataclass(frozen=True)
class Inputs:
    scores: pl.DataFrame
    events: pl.DataFrame
    kpis: pl.DataFrame  # the window, a week before it and a day after it
    reference_kpis: pl.DataFrame
    topology: pl.DataFrame | None
    features: pl.DataFrame | None
    reference_features: pl.DataFrame | None


def _features(settings: Settings, start: date, end: date) -> pl.DataFrame | None:
    try:
        return read_features(settings, start, end, spec_for(settings))
    except CellpulseError:  # none built, or built by another spec: that baseline is skipped
        return None


@task(name="load-evaluation-data", cache_policy=NO_CACHE)
def load_inputs(settings: Settings, start: date, end: date, labels: Path) -> Inputs:
    events = load_events(labels)
    if events is None:
        raise NoDataError(
            f"no ground truth at {labels}; pass --labels FILE with cell_id, "
            "start, end, type (and kind: fault|load) columns"
        )
    if "kind" not in events.columns:
        events = events.with_columns(pl.lit("fault").alias("kind"))
    # A week before the window: per-cell statistics for the z-score baseline and last week's
    # congestion for the seasonal one; after it, the forecast horizon of its last ROPs (a
    # day, or two for the next local day's busy hour).
    ahead = 2 if settings.congestion.horizon == "next_day_busy_hour" else 1
    history = settings.layout.kpi.read(start - timedelta(days=7), end + timedelta(days=ahead))
    if history.is_empty():
        raise NoDataError(f"no ingested KPIs around {start}..{end}; ingest them first")
    reference = history.filter(pl.col("ts").dt.date() < start)
    week_before = (start - timedelta(days=7), start - timedelta(days=1))
    topo_path = settings.layout.truth_topology
    return Inputs(
        scores=settings.layout.scores.read(start, end),
        events=events,
        kpis=history,
        reference_kpis=reference if reference.height else history,
        topology=pl.read_parquet(topo_path) if topo_path.is_file() else None,
        features=_features(settings, start, end),
        reference_features=_features(settings, *week_before),
    )


@flow(name="evaluate")
def evaluate_flow(
    settings: Settings,
    start: date | None = None,
    end: date | None = None,
    labels: Path | None = None,
    k: int = 20,
    log_to_mlflow: bool = True,
) -> Evaluation:
    scored = settings.layout.scores.dates()
    if not scored:
        raise NoDataError(
            f"no scores under {settings.layout.scores.root}; run `cellpulse score` first"
        )
    if start is None and end is None:
        start, end, note = default_window(settings, scored)
    else:
        start, end, note = start or scored[0], end or scored[-1], "the requested days"
    labels = labels or settings.layout.truth_events
    inputs = load_inputs(settings, start, end, labels)
    scores = inputs.scores
    if scores.is_empty():
        raise NoDataError(
            f"no scores between {start} and {end}; scores cover {scored[0]} to {scored[-1]}"
        )
    board = scoreboard(
        scores,
        inputs.events,
        inputs.kpis,
        inputs.reference_kpis,
        inputs.topology,
        settings,
        k,
        inputs.features,
        inputs.reference_features,
    )
    report = settings.layout.reports / f"scoreboard_{start}_{end}.json"
    payload = {
        "window": [str(start), str(end)],
        "window_note": note,
        "k": k,
        "rows": board.to_dicts(),
    }
    lake.atomic_write_bytes(report, json.dumps(payload, indent=1).encode())
    runs: list[str] = []
    if log_to_mlflow:
        tracking.configure(settings)
        for family in ("anomaly", "congestion"):
            # The run whose model produced (most of) these scores gets its family's figures.
            run_id = scores[f"{family}_run_id"].mode().sort()[0]
            family_board = board.filter(pl.col("family") == family)
            tracking.log_to_run(run_id, flat_metrics(family_board), report)
            runs.append(run_id)
    return Evaluation(board, (start, end), report, runs, note)
