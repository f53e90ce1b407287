"""Flow: published scores + ground truth -> the scoreboard (JSON, an MLflow evaluation run per
family, terminal)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from cellpulse import lake
from cellpulse.errors import CellpulseError, NoChampionError, NoDataError
from cellpulse.features.spec import FeatureParams
from cellpulse.features.store import lake_spec, load_events, read_features
from cellpulse.flows.common import retry_on_io
from cellpulse.models import tracking
from cellpulse.models.family import family_names, model_columns
from cellpulse.models.params import ModelParams
from cellpulse.models.scoreboard import headline, scoreboard, scored_by, unscored_families
from cellpulse.settings import Settings
from cellpulse.window import DayWindow, evaluation_window


@dataclass(frozen=True)
class Evaluation:
    """The scoreboard of a window, where it was written, and the runs it was logged to."""

    board: pl.DataFrame
    window: tuple[date, date]
    report: Path
    logged_runs: list[str]
    note: str
    # Which models scored the rows (family, model, version, rows): a baseline's version
    # reads `baseline`.
    scored_by: pl.DataFrame
    skipped: dict[str, str]  # family -> why the board has no figures of it


@task(name="champion-window", retries=2, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def champion_window() -> tuple[DayWindow, str] | None:
    """A champion's training window and its family: the anomaly champion's, else any
    family's; None while no family has a champion with that tag."""
    for family in sorted(family_names(), key=lambda f: f != "anomaly"):
        try:
            trained_on = tracking.champion_train_window(family)
        except NoChampionError:
            continue
        if trained_on is not None:
            return trained_on, family
    return None


@dataclass(frozen=True)
class Inputs:
    """What an evaluation reads besides the scores' own window."""

    scores: pl.DataFrame
    events: pl.DataFrame | None  # None: no labels, the anomaly figures are skipped
    kpis: pl.DataFrame  # the window, a week before it and a day or two after it
    reference_kpis: pl.DataFrame
    topology: pl.DataFrame | None
    features: pl.DataFrame | None
    reference_features: pl.DataFrame | None


def _features(settings: Settings, window: DayWindow) -> pl.DataFrame | None:
    try:
        return read_features(
            settings.layout, window, lake_spec(settings.layout, FeatureParams.of(settings))
        )
    except CellpulseError:  # none built, or built by another spec: that baseline is skipped
        return None


@task(name="load-evaluation-data", cache_policy=NO_CACHE)
def load_inputs(settings: Settings, window: DayWindow, labels: Path) -> Inputs:
    """The scores of `window` and everything they are judged against: labelled events,
    KPIs around the window, the topology (per-slice figures) and features (baselines).
    Without labels only congestion is judged: its truth is the rule on the KPIs."""
    events = load_events(labels)
    start, end = window.bounds()
    # A week before the window: per-cell statistics for the z-score baseline and last week's
    # congestion for the seasonal one; after it, the forecast horizon of its last ROPs (a
    # day, or two for the next local day's busy hour).
    ahead = 2 if settings.congestion.horizon == "next_day_busy_hour" else 1
    history = settings.layout.kpi.read(start - timedelta(days=7), end + timedelta(days=ahead))
    if history.is_empty():
        raise NoDataError(f"no ingested KPIs around {window}; ingest them first")
    reference = history.filter(pl.col("ts").dt.date() < start)
    week_before = DayWindow(start - timedelta(days=7), start - timedelta(days=1))
    scores = settings.layout.scores.read(start, end)
    if scores.is_empty():
        scored = settings.layout.scores.dates()
        raise NoDataError(
            f"no scores between {start} and {end}; scores cover {scored[0]} to {scored[-1]}"
        )
    topo_path = settings.layout.truth_topology
    return Inputs(
        scores=scores,
        events=events,
        kpis=history,
        reference_kpis=reference if reference.height else history,
        topology=pl.read_parquet(topo_path) if topo_path.is_file() else None,
        features=_features(settings, window),
        reference_features=_features(settings, week_before),
    )


@task(name="scoreboard", cache_policy=NO_CACHE)
def judge(settings: Settings, inputs: Inputs, k: int) -> pl.DataFrame:
    """The scoreboard of the inputs: every detector and baseline, per metric and slice."""
    return scoreboard(
        inputs.scores,
        inputs.events,
        inputs.kpis,
        inputs.reference_kpis,
        inputs.topology,
        ModelParams.of(settings),
        k,
        inputs.features,
        inputs.reference_features,
    )


def skipped_families(scores: pl.DataFrame, has_labels: bool, labels: Path) -> dict[str, str]:
    """Each family the board has no figures of, and why."""
    skipped = {
        f: "none of the evaluated rows were scored by it"
        for f in unscored_families(scores, family_names())
    }
    if not has_labels and "anomaly" not in skipped:
        skipped["anomaly"] = (
            f"no event labels at {labels}; pass --labels FILE with cell_id, start, end, type "
            "(and kind: fault|load) columns"
        )
    return skipped


@task(name="write-scoreboard", retries=2, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def write_report(
    settings: Settings,
    board: pl.DataFrame,
    window: DayWindow,
    note: str,
    k: int,
    who: pl.DataFrame,
    skipped: dict[str, str],
) -> Path:
    """The scoreboard as JSON under the home's reports folder, one file per window."""
    report = settings.layout.reports / f"scoreboard_{window.start}_{window.end}.json"
    payload = {
        "window": [str(window.start), str(window.end)],
        "window_note": note,
        "k": k,
        "scored_by": who.to_dicts(),
        "skipped": skipped,
        "rows": board.to_dicts(),
    }
    lake.atomic_write_bytes(report, json.dumps(payload, indent=1).encode())
    return report


@task(name="log-evaluation", retries=2, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def log_evaluations(
    settings: Settings,
    scores: pl.DataFrame,
    board: pl.DataFrame,
    window: DayWindow,
    report: Path,
) -> list[str]:
    """Per family, an evaluation run of its own, linked to the champion (model version and
    training run) that made (most of) its model-scored rows: the family's headline metrics
    and its full board as a table. The ids of those runs. A family whose rows were all
    scored by its baseline has no model to link to and gets no run."""
    runs = []
    for family in family_names():
        _, _, run_column = model_columns(family)
        part = board.filter(pl.col("family") == family)
        if run_column not in scores.columns or part.is_empty():
            continue
        ids = scores[run_column].drop_nulls().filter(scores[run_column].drop_nulls() != "")
        if ids.is_empty():
            continue
        training_run = ids.mode().sort()[0]
        runs.append(
            tracking.log_evaluation(
                family, settings, training_run, window, headline(part, family), part, report
            )
        )
    return runs


@flow(name="evaluate")
def evaluate_flow(
    settings: Settings,
    window: DayWindow = DayWindow(),
    labels: Path | None = None,
    k: int = 20,
    log_to_mlflow: bool = True,
) -> Evaluation:
    """Judge the published scores of `window` next to baselines: anomaly against labelled
    events (skipped, saying so, without labels), congestion against its rule on the KPIs
    (default window: the days scored after a champion's training window, the anomaly
    champion's first; every scored day while no family has a champion)."""
    tracking.configure(settings)
    scored = settings.layout.scores.dates()
    if not scored:
        raise NoDataError(
            f"no scores under {settings.layout.scores.root}; run `cellpulse score` first"
        )
    trained = champion_window() if window == DayWindow() else None
    trained_on, champion = trained if trained else (None, None)
    window, note = evaluation_window(scored, window, trained_on, champion)
    labels_path = settings.layout.labels_file(labels)
    inputs = load_inputs(settings, window, labels_path)
    board = judge(settings, inputs, k)
    who = scored_by(inputs.scores, family_names())
    skipped = skipped_families(inputs.scores, inputs.events is not None, labels_path)
    report = write_report(settings, board, window, note, k, who, skipped)
    runs = log_evaluations(settings, inputs.scores, board, window, report) if log_to_mlflow else []
    get_run_logger().info(
        f"evaluate: scores of {window} ({note}) judged against "
        f"{'labelled events and ' if inputs.events is not None else ''}the congestion rule: "
        f"{board.height} figures, {len(skipped)} families skipped; report {report}"
    )
    return Evaluation(board, window.bounds(), report, runs, note, who, skipped)
