"""The pipeline's stages as commands: `features`, `train`, `score`, `evaluate`, `backtest`,
`backfill`, and `run` and `demo`, which chain them."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from cellpulse.cli.data import fail_on_rejected, landing_targets
from cellpulse.cli.edge import check_labels, command_settings, console, handles_errors, table
from cellpulse.cli.options import (
    ConfigOpt,
    FromOpt,
    HomeOpt,
    LabelsOpt,
    MappingOpt,
    PathsArg,
    ToOpt,
)
from cellpulse.cli.reports import (
    mlflow_ui_url,
    print_champions,
    print_ingest,
    print_latest_scores,
    print_score,
    print_score_scale,
    print_scoreboard,
    print_simulation,
    print_train,
)
from cellpulse.errors import CellpulseError, NoDataError
from cellpulse.settings import Settings
from cellpulse.window import DayWindow


@handles_errors
def features(
    start: FromOpt = None,
    end: ToOpt = None,
    stale: Annotated[
        bool, typer.Option("--stale", help="Only days that ingest marked stale.")
    ] = False,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Build per-cell features for a range of days (default: every ingested day)."""
    from cellpulse.features.store import ingested_days

    window = DayWindow.of(start, end)
    settings = command_settings(
        home,
        config,
        must_exist=True,
        flows=True,
        check=lambda s: stale or ingested_days(s.layout, window),
    )
    from cellpulse.flows.features import features_flow

    summary = features_flow(settings, window, only_stale=stale)
    if summary is None:
        console.print("features: no stale days; nothing to do")
        return
    console.print(
        f"features: {len(summary.days)} days ({summary.days[0]} to {summary.days[-1]}), "
        f"{summary.rows:,} rows, {summary.cells} cells, {summary.columns} columns, spec "
        f"{summary.spec_hash} -> {summary.out_dir}"
        + (f" ({summary.reused} unchanged days reused from cache)" if summary.reused else "")
    )
    print_coverage(summary)


def print_coverage(summary: Any) -> None:
    """What the built features hold of the full spec (absent KPIs, all-null columns)."""
    if summary.coverage is not None:
        console.print(f"  {summary.coverage.line()}")


@handles_errors
def train(
    start: FromOpt = None,
    end: ToOpt = None,
    labels: LabelsOpt = None,
    tune: Annotated[
        int,
        typer.Option(
            "--tune",
            min=0,
            help="Search up to N LightGBM parameter sets per model first (trial 0 = the "
            "configured ones), each a nested MLflow run, compared on a validation window before "
            "the hold-out; the best is refitted and judged on the hold-out like any candidate.",
        ),
    ] = 0,
    tune_minutes: Annotated[
        float,
        typer.Option("--tune-minutes", min=0, help="Time box for each model's search."),
    ] = 30.0,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Train the anomaly and congestion models and register them in MLflow.

    Time-ordered split; each model is compared with its baselines (and the current champion)
    on the same hold-out and aliased `champion` only if it wins."""
    window = DayWindow.of(start, end)

    def check(settings: Settings) -> None:
        check_labels(labels)
        window.resolve(settings.layout.features.dates(), "features", "run `cellpulse features`")

    settings = command_settings(home, config, must_exist=True, flows=True, check=check)
    from cellpulse.flows.train import train_flow

    result = train_flow(settings, window, labels, tune, tune_minutes)
    print_train(result, settings)
    if not result.logged:
        raise NoDataError(
            "no model family could train: "
            + "; ".join(f"{f}: {why}" for f, why in result.not_trained.items())
        )


@handles_errors
def score(
    start: FromOpt = None,
    end: ToOpt = None,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Score days with each family's champion and publish the scores.

    A family without a champion yet publishes its baseline's scores (model `baseline:...`,
    version `baseline`). Default: the newest day with features. Scores go to lake/scores,
    the ops store and a Prefect artifact; re-scoring a period replaces it."""
    window = DayWindow.of(start, end)

    def days_to_score(settings: Settings) -> list[Any]:
        available = settings.layout.features.dates()
        if not available:
            raise CellpulseError(
                f"no features under {settings.layout.features.root}; run `cellpulse features` first"
            )
        return [available[-1]] if window == DayWindow() else window.resolve(available, "features")

    settings = command_settings(home, config, must_exist=True, flows=True, check=days_to_score)
    from cellpulse.flows.score import score_flow

    summary = score_flow(settings, days_to_score(settings))
    print_score(summary)


@handles_errors
def evaluate(
    start: FromOpt = None,
    end: ToOpt = None,
    labels: LabelsOpt = None,
    k: Annotated[
        int, typer.Option(help="Cells an engineer reads each day (precision@k).", min=1)
    ] = 20,
    log_to_mlflow: Annotated[
        bool,
        typer.Option(
            help="Add the figures to the training runs of the models that made the scores."
        ),
    ] = True,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Judge published scores against labelled events and the congestion rule, next to
    baselines.

    Anomaly event recall, alert precision, false alarms, detection delay, precision@k (needs
    event labels: the simulator's, or --labels); congestion PR-AUC, Brier and lift (judged by
    the rule on the KPIs, no labels needed); per anomaly type and per slice. Rows a baseline
    scored are judged as that baseline. Default window: the days scored after a champion's
    training window, else every scored day."""
    window = DayWindow.of(start, end)
    settings = command_settings(
        home, config, must_exist=True, flows=True, check=lambda _: check_labels(labels)
    )
    from cellpulse.flows.evaluate import evaluate_flow

    result = evaluate_flow(settings, window, labels, k, log_to_mlflow)
    print_scoreboard(result)


@handles_errors
def run(
    paths: PathsArg = None,
    mapping: MappingOpt = None,
    every_rop: Annotated[
        bool,
        typer.Option(
            "--every-rop",
            help="What the every-ROP deployment runs: ingest, then build, score and publish "
            "only the ROPs after the newest published one (the daily stages when there is "
            "nothing to go on yet).",
        ),
    ] = False,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run the daily pipeline as one Prefect flow.

    ingest -> features (new and stale days) -> train (families without a champion) ->
    score (new and stale days; a family without a champion scores with its baseline)."""
    settings = command_settings(
        home, config, flows=True, check=lambda s: landing_targets(s, paths, mapping)
    )
    if every_rop:
        fail_on_rejected(run_rops(settings, paths, mapping).ingest)
        return
    result = run_pipeline(settings, paths, mapping)
    fail_on_rejected(result.ingest)


def run_rops(settings: Settings, paths: list[Path] | None, mapping: str | None) -> Any:
    """The every-ROP flow on `paths` (default: the landing folder), what it did printed."""
    from cellpulse.flows.pipeline import rop_flow

    landing_targets(settings, paths, mapping)
    result = rop_flow(settings, paths, mapping)
    print_ingest(result.ingest)
    console.print(f"every ROP: {result.how} ({result.why})")
    if result.rops is not None:
        r = result.rops
        first, last = r.scores["ts"].min(), r.scores["ts"].max()
        console.print(
            f"score: {r.rops} ROP(s) ({first:%Y-%m-%d %H:%M} to {last:%H:%M} UTC), "
            f"{r.scores.height:,} rows, {int(r.scores['is_anomaly'].sum())} anomalous, "
            f"{r.alerts.height} alerts touched ({r.new_alerts} new)"
        )
        for family, scored_by in r.families.items():
            console.print(f"  {family}: {scored_by}")
    elif result.batch is not None and result.batch.score is not None:
        print_score(result.batch.score)
    return result


def run_pipeline(settings: Settings, paths: list[Path] | None, mapping: str | None = None) -> Any:
    """The daily pipeline flow on `paths` (default: the landing folder), each stage's
    outcome printed; the flow's result."""
    from cellpulse.flows.pipeline import pipeline_flow

    landing_targets(settings, paths, mapping)
    result = pipeline_flow(settings, paths, mapping)
    print_ingest(result.ingest)
    if result.features is not None:
        f = result.features
        console.print(
            f"features: {len(f.days)} days rebuilt, {f.rows:,} rows, {f.columns} "
            f"columns -> {f.out_dir}"
        )
        print_coverage(f)
    else:
        console.print("features: nothing stale")
    if result.train is not None:
        print_train(result.train, settings)
    else:
        console.print(
            "train: skipped (every family has a champion, or no new features since its "
            "last training; run `cellpulse train` to retrain)"
        )
    if result.score is not None:
        print_score(result.score)
    else:
        console.print("score: nothing new to score")
    return result


@handles_errors
def demo(
    cells: Annotated[int, typer.Option(help="Cells in the simulated network.", min=3)] = 150,
    days: Annotated[int, typer.Option(help="Days to simulate (at least 8).", min=8)] = 21,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Simulate a small network, run the whole pipeline on it, show where to look.

    Safe to run again: unchanged files are not re-ingested and nothing is duplicated."""
    from cellpulse.simulator import DeliveryConfig, SimulationConfig, write_network

    t0 = time.perf_counter()
    settings = command_settings(home, config, flows=True, tracking=True)
    cfg = SimulationConfig(
        cells=cells,
        days=days,
        seed=seed,
        rop_minutes=settings.rop_minutes,
        delivery=DeliveryConfig.realistic(),
    )
    sim = write_network(
        cfg, settings.layout.landing, settings.layout.ground_truth, settings.congestion
    )
    print_simulation(sim, cfg.start, time.perf_counter() - t0)
    result = run_pipeline(settings, None)
    if result.train is None:
        print_champions()
    if result.score is None:
        print_latest_scores(settings)
    from cellpulse.flows.evaluate import evaluate_flow

    print_score_scale(settings)
    print_scoreboard(evaluate_flow(settings))
    print_where_to_look(settings, time.perf_counter() - t0)


def print_where_to_look(settings: Settings, seconds: float) -> None:
    """After the demo: where its scores, ops store, ops page, MLflow UI and truth are."""
    from cellpulse.opsstore import ops_store_location

    console.print(f"\n[bold]done in {seconds:.0f} s.[/] Where to look:")
    exe = _self_command()
    console.print(f"  scores (parquet): {settings.layout.scores.root}")
    console.print(f"  ops store: {ops_store_location(settings)}  (tables scores, alerts)")
    console.print(
        f"  ops page: {exe} api --home {settings.home}   then open http://127.0.0.1:"
        f"{settings.api.port}/ (token in {settings.layout.api_token})"
    )
    console.print(f"  MLflow UI: {exe} ui --home {settings.home}   then open {mlflow_ui_url()}")
    console.print(
        f"  Prefect UI (flow runs, their logs and artifacts): {exe} prefect-ui --home "
        f"{settings.home}   then open http://127.0.0.1:4200"
    )
    console.print(f"  ground truth: {settings.layout.ground_truth}")


def _self_command() -> str:
    exe = Path(sys.argv[0])
    return str(exe) if exe.name == "cellpulse" and exe.exists() else "cellpulse"


@handles_errors
def backtest(
    folds: Annotated[int, typer.Option(help="Successive origins to train and test.", min=1)] = 3,
    labels: LabelsOpt = None,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Rolling-origin backtest of both model families: each fold trains on the past and is
    tested on the next train.holdout_days days. MLflow gets one parent run per family (mean
    and spread of every metric) with a nested run per fold; the registry is not touched."""
    from cellpulse.models.backtest import MIN_TRAIN_DAYS, fold_ends, summarise

    def check(settings: Settings) -> None:
        check_labels(labels)
        days = DayWindow().resolve(
            settings.layout.features.dates(), "features", "run `cellpulse features`"
        )
        fold_ends(days, folds, settings.train.holdout_days, MIN_TRAIN_DAYS)

    settings = command_settings(home, config, must_exist=True, flows=True, check=check)
    from cellpulse.flows.backtest import backtest_flow

    result = backtest_flow(settings, folds, labels)
    for family, family_folds in result.folds.items():
        console.print(
            table(
                f"{family}: {len(family_folds)} folds, tests "
                f"{family_folds[0].test[0]}..{family_folds[-1].test[1]} "
                f"(MLflow run {result.runs[family][:8]})",
                ["metric", "mean", "std", "folds"],
                [
                    (k, f"{m:.4f}", f"{sd:.4f}", n)
                    for k, (m, sd, n) in summarise(family_folds).items()
                ],
            )
        )
        for fold in family_folds:
            if fold.skipped:
                console.print(f"  fold {fold.index} skipped: {fold.skipped}")


@handles_errors
def backfill(
    start: Annotated[
        datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="First day (YYYY-MM-DD).")
    ],
    end: Annotated[
        datetime, typer.Option("--to", formats=["%Y-%m-%d"], help="Last day (YYYY-MM-DD).")
    ],
    stages: Annotated[
        str, typer.Option(help="Comma-separated stages to run, in order: features,score.")
    ] = "features,score",
    force: Annotated[
        bool, typer.Option("--force", help="Redo days even if their output is current.")
    ] = False,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Rebuild features and/or scores over a range of ingested days, one day at a time.

    Resumable: a day whose output exists and is not stale is skipped, so re-running an
    interrupted backfill continues where it stopped. Progress shows here and in the Prefect
    UI (artifact `backfill`)."""
    from cellpulse.backfill import check_stages
    from cellpulse.features.store import ingested_days

    window = DayWindow.of(start, end)
    wanted = tuple(s.strip() for s in stages.split(",") if s.strip())

    def check(settings: Settings) -> None:
        check_stages(wanted)
        ingested_days(settings.layout, window)

    settings = command_settings(home, config, must_exist=True, flows=True, check=check)
    from cellpulse.flows.backfill import backfill_flow

    summary = backfill_flow(settings, window, wanted, force)
    ran = {d: s for d, s in summary.ran.items() if s}
    per_day = sorted(summary.seconds[d] for d in ran)
    timing = (
        f"; {per_day[len(per_day) // 2]:.1f} s per day (median), {sum(per_day):.0f} s in all"
        if per_day
        else ""
    )
    console.print(
        f"backfill {DayWindow.of(start, end)} ({', '.join(wanted)}): {len(summary.days)} "
        "days with KPIs, "
        f"{len(ran)} run, {len(summary.skipped)} already current{timing} -> "
        f"{settings.layout.features.root} and {settings.layout.scores.root}"
    )
