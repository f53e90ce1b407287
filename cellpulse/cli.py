"""The `cellpulse` command line: one command per stage, plus `run` and `demo`.

Every command takes `--home DIR` (default ./.cellpulse, or CELLPULSE_HOME) and `--config FILE`.
Errors a user can fix print one line and exit with status 2; nothing already stored is harmed.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cellpulse import progress
from cellpulse.errors import CellpulseError
from cellpulse.redaction import redact_url
from cellpulse.runtime import configure_process, start_prefect_server
from cellpulse.settings import Settings, load_settings
from cellpulse.simulator.config import EVENT_TYPES
from cellpulse.window import DayWindow

app = typer.Typer(
    name="cellpulse",
    help="On-premises ML for RAN cell KPIs: ingest PM files, build features, train LightGBM "
    "anomaly and congestion models (tracked in MLflow), and publish ranked scores for network "
    "operations. Start with `cellpulse demo`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Wide enough for the score tables when output goes to a file or a CI log.
console = Console(stderr=False, width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True)
T = TypeVar("T")

HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="cellpulse home folder (landing, lake, MLflow store, ops store). "
        "Default: ./.cellpulse or $CELLPULSE_HOME.",
        show_default=False,
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="YAML settings file (env CELLPULSE_* and flags override it).",
        show_default=False,
    ),
]
MappingOpt = Annotated[
    str | None,
    typer.Option(
        "--mapping",
        help="Source mapping for foreign exports: a YAML file or a shipped mapping's name "
        "(see `cellpulse mapping list`). Default: contract-shaped parquet.",
        show_default=False,
    ),
]
LabelsOpt = Annotated[
    Path | None,
    typer.Option(
        help="Labelled events (cell_id, start, end, type[, kind: fault|load]), parquet or CSV. "
        "Default: <home>/ground_truth/events.parquet if present.",
        show_default=False,
    ),
]
FromOpt = Annotated[
    datetime | None,
    typer.Option(
        "--from", formats=["%Y-%m-%d"], help="First day (YYYY-MM-DD, UTC).", show_default=False
    ),
]
ToOpt = Annotated[
    datetime | None,
    typer.Option(
        "--to",
        formats=["%Y-%m-%d"],
        help="Last day, inclusive (YYYY-MM-DD, UTC).",
        show_default=False,
    ),
]


class RichReporter:
    """Progress bars for the core's long loops."""

    def track(self, items: Iterable[T], description: str, total: int | None) -> Iterator[T]:
        items = list(items) if total is None else items
        total = total if total is not None else len(items)  # type: ignore[arg-type]
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err_console, transient=True) as bar:
            task = bar.add_task(description, total=total)
            for item in items:
                yield item
                bar.advance(task)


def handles_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a CellpulseError into one clear line and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CellpulseError as exc:
            # escaped: a message quotes file names, and "[/x]" in one is not markup
            err_console.print(
                f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from None

    return wrapper


def _settings(
    home: Path | None,
    config: Path | None,
    must_exist: bool = False,
    flows: bool = False,
    **overrides: Any,
) -> Settings:
    """Settings for a command, the process prepared for them; `flows`: the command runs
    Prefect flows (without PREFECT_API_URL, a temporary server that dies with us)."""
    settings = load_settings(config, home=home, **overrides)
    if must_exist and not settings.home.is_dir():
        raise CellpulseError(
            f"cellpulse home {settings.home} does not exist; run `cellpulse demo`, or "
            "`cellpulse simulate` then `cellpulse ingest`, or pass --home to an existing one"
        )
    settings.home.mkdir(parents=True, exist_ok=True)
    configure_process(settings)
    if flows:
        start_prefect_server(settings)
    if sys.stderr.isatty():
        progress.set_reporter(RichReporter())
    return settings


def _table(title: str, columns: list[str], rows: Iterable[Iterable[Any]]) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        table.add_column(c, overflow="fold")
    for row in rows:
        table.add_row(*[_fmt(v) for v in row])
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "–"
        return f"{int(value):,}" if value.is_integer() and abs(value) >= 1 else f"{value:.3f}"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    if isinstance(value, list):
        return ", ".join(value)
    return str(value)


# ----------------------------------------------------------------------------- simulate


@app.command()
@handles_errors
def simulate(
    cells: Annotated[int, typer.Option(help="Number of cells (3 sectors per site).", min=1)] = 200,
    days: Annotated[int, typer.Option(help="Days to simulate.", min=1)] = 14,
    start: Annotated[
        datetime, typer.Option(formats=["%Y-%m-%d"], help="First day (UTC).")
    ] = datetime(2026, 1, 5),
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same files.")] = 7,
    rop_minutes: Annotated[int, typer.Option(help="ROP length: 5, 15 or 60 minutes.")] = 15,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Landing folder to write to. Default: <home>/landing.", show_default=False
        ),
    ] = None,
    events_per_cell_day: Annotated[
        float, typer.Option(help="Injected events per cell-day.", min=0)
    ] = 0.012,
    event_weight: Annotated[
        list[str] | None,
        typer.Option(
            help="Relative rate of one event type, TYPE=WEIGHT (repeatable; 0 turns "
            "a type off). Types: " + ", ".join(EVENT_TYPES) + ".",
            show_default=False,
        ),
    ] = None,
    realistic_delivery: Annotated[
        bool,
        typer.Option(
            help="Deliver like a real OSS feed: some ROPs missing, some files late, "
            "twice, or first wrong and later corrected."
        ),
    ] = False,
    holiday: Annotated[
        list[datetime] | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="A public holiday (loads like a Sunday); repeat for several.",
            show_default=False,
        ),
    ] = None,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Simulate a RAN and write its PM files into the landing folder.

    One parquet file per hour, as an OSS export delivers them, plus ground truth (injected
    events, congestion periods, topology) under <home>/ground_truth."""
    from cellpulse.simulator import DeliveryConfig, SimulationConfig, write_network
    from cellpulse.simulator.config import parse_event_weights

    settings = _settings(home, config, rop_minutes=rop_minutes)
    try:
        weights = parse_event_weights(event_weight or [])
    except ValueError as exc:
        raise CellpulseError(str(exc)) from None
    cfg = SimulationConfig(
        cells=cells,
        days=days,
        start=start.date(),
        seed=seed,
        rop_minutes=settings.rop_minutes,
        events_per_cell_day=events_per_cell_day,
        event_weights=weights,
        holidays=tuple(h.date() for h in holiday or []),
        delivery=DeliveryConfig.realistic() if realistic_delivery else DeliveryConfig(),
    )
    t0 = time.perf_counter()
    summary = write_network(
        cfg, out or settings.layout.landing, settings.layout.ground_truth, settings.congestion
    )
    _print_simulation(summary, cfg.start, time.perf_counter() - t0)


def _print_simulation(summary: Any, start: date, seconds: float) -> None:
    by_type = summary.events.group_by("type").len().sort("type")
    extra = ""
    if summary.late_files or summary.redelivered_files or summary.duplicate_files:
        extra = (
            f" (of them {summary.late_files} late, {summary.redelivered_files} first "
            f"delivered wrong then corrected, {summary.duplicate_files} delivered twice)"
        )
    console.print(
        f"simulated [bold]{summary.cells}[/] cells on {summary.sites} sites, {summary.days} "
        f"days from {start}: {summary.rows:,} rows in {summary.files} files{extra} -> "
        f"{summary.landing_dir} ({seconds:.1f} s)"
    )
    console.print(
        f"ground truth: {summary.events.height} events "
        f"({', '.join(f'{t} {n}' for t, n in by_type.iter_rows())}), "
        f"{summary.congestion_periods} congestion periods -> {summary.truth_dir}"
    )


# ----------------------------------------------------------------------------- ingest


def _print_ingest(summary: Any) -> None:
    console.print(
        f"ingest: {summary.count('ingested')} files ingested, {summary.count('skipped')} "
        f"already ingested, {summary.count('duplicate')} duplicate deliveries, "
        f"{len(summary.rejected)} rejected; {summary.rows_accepted:,} rows accepted "
        f"({summary.rows_replaced:,} of them replacing earlier deliveries), "
        f"{summary.rows_quarantined:,} quarantined; {summary.partitions_written} partitions "
        f"written -> {summary.lake_dir}"
    )
    if summary.rows_quarantined or summary.rejected:
        console.print(f"  reports: {summary.quarantine_dir}")


def _fail_on_rejected(summary: Any) -> None:
    if summary.rejected:
        first = summary.rejected[0]
        more = f" (and {len(summary.rejected) - 1} more)" if len(summary.rejected) > 1 else ""
        raise CellpulseError(f"rejected {first.reason}{more}")


@app.command()
@handles_errors
def ingest(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Files or folders to ingest. Default: <home>/landing.", show_default=False
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Re-read files already in the ledger.")] = False,
    mapping: MappingOpt = None,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Validate landing files and merge them into lake/kpi.

    Bad rows go to quarantine/ with a report; the same file twice changes nothing; a
    corrected re-delivery replaces the rows it corrects."""
    settings = _settings(home, config, flows=True)
    from cellpulse.flows.ingest import ingest_flow

    targets = _landing_targets(settings, paths, mapping)
    summary = ingest_flow(settings, targets, force, mapping)
    _print_ingest(summary)
    _fail_on_rejected(summary)


# ----------------------------------------------------------------------------- features


@app.command()
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
    settings = _settings(home, config, must_exist=True, flows=True)
    from cellpulse.flows.features import features_flow

    summary = features_flow(settings, DayWindow.of(start, end), only_stale=stale)
    if summary is None:
        console.print("features: no stale days; nothing to do")
        return
    console.print(
        f"features: {len(summary.days)} days ({summary.days[0]} to {summary.days[-1]}), "
        f"{summary.rows:,} rows, {summary.cells} cells, {summary.columns} columns, spec "
        f"{summary.spec_hash} -> {summary.out_dir}"
        + (f" ({summary.reused} unchanged days reused from cache)" if summary.reused else "")
    )


# ----------------------------------------------------------------------------- train


def _metrics_table(family: str, metrics: dict[str, float], baselines: dict[str, float]) -> Table:
    rows = []
    for name, value in sorted(metrics.items()):
        if not name.startswith("val_"):
            continue
        key = name.removeprefix("val_")
        base = {
            k.removeprefix("baseline_").removesuffix("_" + key): v
            for k, v in baselines.items()
            if k.endswith("_" + key)
        }
        rows.append([key, value, ", ".join(f"{k} {_fmt(v)}" for k, v in base.items()) or "–"])
    return _table(f"{family}: hold-out metrics", ["metric", "model", "baselines"], rows)


@app.command()
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
            "configured ones), each a nested MLflow run; the best on the hold-out is registered.",
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
    settings = _settings(home, config, must_exist=True, flows=True)
    from cellpulse.flows.train import train_flow

    result = train_flow(settings, DayWindow.of(start, end), labels, tune, tune_minutes)
    _print_train(result, settings)


def _print_train(result: Any, settings: Settings) -> None:
    for family, logged in result.logged.items():
        cand = result.candidates[family]
        console.print(_metrics_table(family, cand.metrics, cand.baselines))
        verdict = (
            "[green]promoted to champion[/]"
            if logged.decision.promote
            else "[yellow]not promoted[/]"
        )
        if "supervised" in cand.params:
            console.print(f"  fault classifier: {cand.params['supervised']}")
        if family in result.tuning:
            console.print(f"  tuning: {result.tuning[family]}")
        console.print(
            f"  {logged.name} version {logged.version}: {verdict} — {logged.decision.reason}"
        )
    console.print(
        f"MLflow: {redact_url(settings.tracking_uri)} "
        f"(open with `cellpulse ui --home {settings.home}`)"
    )


# ----------------------------------------------------------------------------- score


@app.command()
@handles_errors
def score(
    start: FromOpt = None,
    end: ToOpt = None,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Score days with both champion models and publish the scores.

    Default: the newest day with features. Scores go to lake/scores, the ops store and a
    Prefect artifact; re-scoring a period replaces it."""
    settings = _settings(home, config, must_exist=True, flows=True)
    from cellpulse.flows.score import score_flow

    available = settings.layout.features.dates()
    if not available:
        raise CellpulseError(
            f"no features under {settings.layout.features.root}; run `cellpulse features` first"
        )
    window = DayWindow.of(start, end)
    days = [available[-1]] if window == DayWindow() else window.resolve(available, "features")
    summary = score_flow(settings, days)
    _print_score(summary)


def _print_score(summary: Any, top: int = 10) -> None:
    from cellpulse.publish import top_anomalous, top_congestion

    console.print(
        f"score: {len(summary.days)} days ({summary.days[0]} to {summary.days[-1]}), "
        f"{summary.rows:,} rows, {summary.cells} cells, {summary.anomalous_rops} anomalous "
        f"ROPs, {summary.alerts} alerts ({summary.open_alerts} open, {summary.new_alerts} new) "
        f"-> {summary.lake_dir} and {summary.ops_store}"
    )
    if summary.webhook is not None:
        hook = summary.webhook
        outcome = (
            f"delivered in {hook.attempts} attempt(s)"
            if hook.delivered
            else f"[red]NOT delivered[/] after {hook.attempts} attempt(s): {hook.error}"
        )
        console.print(f"webhook {hook.url}: {hook.alerts} new alert(s) {outcome}")
    ranked = top_anomalous(summary.scores, top)
    console.print(
        _table(
            "Most anomalous cells",
            ["cell", "region", "worst at (UTC)", "score", "anomalous ROPs", "driving KPIs"],
            ranked.select(
                "cell_id", "region", "worst_at", "anomaly_score", "anomalous_rops", "anomaly_kpis"
            ).rows(),
        )
    )
    risk = top_congestion(summary.scores, top)
    console.print(
        _table(
            "Congestion risk on the newest day",
            ["cell", "region", "peak at (UTC)", "P(congested)", "horizon"],
            risk.select(
                "cell_id", "region", "peak_at", "congestion_prob", "congestion_horizon"
            ).rows(),
        )
    )


# ----------------------------------------------------------------------------- evaluate


@app.command()
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
    """Judge published scores against ground truth, next to baselines.

    Anomaly event recall, alert precision, false alarms, detection delay, precision@k;
    congestion PR-AUC, Brier and lift; per anomaly type and per slice. Default window: the
    days scored after the champion's training window."""
    settings = _settings(home, config, must_exist=True, flows=True)
    from cellpulse.flows.evaluate import evaluate_flow

    result = evaluate_flow(settings, DayWindow.of(start, end), labels, k, log_to_mlflow)
    _print_scoreboard(result)


def _pivot(board: Any, family: str, metrics: list[str]) -> list[list[Any]]:
    import polars as pl

    part = board.filter((pl.col("family") == family) & (pl.col("slice_kind") == "all"))
    detectors = part["detector"].unique(maintain_order=True).to_list()
    rows = []
    for m in metrics:
        values = {
            r["detector"]: r["value"]
            for r in part.filter(pl.col("metric") == m).iter_rows(named=True)
        }
        rows.append([m, *[values.get(d, float("nan")) for d in detectors]])
    return [detectors, *rows]


def _print_scoreboard(result: Any) -> None:
    import polars as pl

    board = result.board
    console.print(f"scoreboard {result.window[0]} to {result.window[1]} ({result.note})")
    head, *rows = _pivot(
        board,
        "anomaly",
        [
            "events",
            "event_recall",
            "median_detection_delay_rops",
            "alerts",
            "alert_precision",
            "false_alarms_per_100_cell_days",
            "pr_auc",
            next(m for m in board["metric"].unique().to_list() if m.startswith("precision_at_")),
        ],
    )
    console.print(_table("Anomaly: model vs baseline", ["metric", *head], rows))
    typed = board.filter((pl.col("family") == "anomaly") & (pl.col("slice_kind") == "type"))
    per_type = typed.pivot(on=["detector", "metric"], index="slice", values="value")
    if per_type.height:
        detectors = typed["detector"].unique(maintain_order=True).to_list()
        columns = {'{"model","events"}': "events"}
        columns |= {f'{{"{d}","event_recall"}}': f"recall ({d})" for d in detectors}
        columns['{"model","median_detection_delay_rops"}'] = "median delay (ROPs, model)"
        present = [c for c in columns if c in per_type.columns]
        console.print(
            _table(
                "Anomaly by type",
                ["type", *[columns[c] for c in present]],
                per_type.select("slice", *present).rows(),
            )
        )
    head, *rows = _pivot(
        board,
        "congestion",
        [
            "rows",
            "positives",
            "pr_auc",
            "brier",
            "precision",
            "recall",
            "lift_over_persistence",
            "lift_over_seasonal",
        ],
    )
    console.print(_table("Congestion: model vs baselines", ["metric", *head], rows))
    console.print(f"slices (area type, band, region) and everything above: {result.report}")
    if result.logged_runs:
        console.print(f"logged to MLflow runs {', '.join(r[:8] for r in result.logged_runs)}")


# ----------------------------------------------------------------------------- run / demo


@app.command()
@handles_errors
def run(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Files or folders to ingest. Default: <home>/landing.", show_default=False
        ),
    ] = None,
    mapping: MappingOpt = None,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run the daily pipeline as one Prefect flow.

    ingest -> features (new and stale days) -> train (only if there is no champion) ->
    score (new and stale days)."""
    settings = _settings(home, config, flows=True)
    result = _run_pipeline(settings, paths, mapping)
    _fail_on_rejected(result.ingest)


def _landing_targets(
    settings: Settings, paths: list[Path] | None, mapping: str | None
) -> list[Path]:
    """What to ingest, checked before any flow starts: the folders exist and hold files,
    and the mapping (if any) loads."""
    from cellpulse.ingest import list_landing_files
    from cellpulse.mapping import load_mapping

    if mapping:
        load_mapping(mapping)
    targets = paths or [settings.layout.landing]
    if not paths and not settings.layout.landing.is_dir():
        raise CellpulseError(
            f"landing folder {settings.layout.landing} does not exist; put PM "
            "files there or run `cellpulse simulate`"
        )
    if not list_landing_files(targets):
        raise CellpulseError(f"no files in {', '.join(map(str, targets))}; nothing to ingest")
    return targets


def _run_pipeline(settings: Settings, paths: list[Path] | None, mapping: str | None = None) -> Any:
    from cellpulse.flows.pipeline import pipeline_flow

    _landing_targets(settings, paths, mapping)
    result = pipeline_flow(settings, paths, mapping)
    _print_ingest(result.ingest)
    if result.features is not None:
        f = result.features
        console.print(
            f"features: {len(f.days)} days rebuilt, {f.rows:,} rows, {f.columns} "
            f"columns -> {f.out_dir}"
        )
    else:
        console.print("features: nothing stale")
    if result.train is not None:
        _print_train(result.train, settings)
    else:
        console.print("train: champions exist; skipped (run `cellpulse train` to retrain)")
    if result.score is not None:
        _print_score(result.score)
    else:
        console.print("score: nothing new to score")
    return result


@app.command()
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
    settings = _settings(home, config, flows=True)
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
    _print_simulation(sim, cfg.start, time.perf_counter() - t0)
    result = _run_pipeline(settings, None)
    if result.train is None:
        _print_champions(settings)
    if result.score is None:
        _print_latest_scores(settings)
    from cellpulse.flows.evaluate import evaluate_flow
    from cellpulse.opsstore import ops_store_location

    _print_scoreboard(evaluate_flow(settings))
    console.print(f"\n[bold]done in {time.perf_counter() - t0:.0f} s.[/] Where to look:")
    exe = _self_command()
    console.print(f"  scores (parquet): {settings.layout.lake / 'scores'}")
    console.print(f"  ops store: {ops_store_location(settings)}  (tables scores, alerts)")
    console.print(
        f"  ops page: {exe} api --home {settings.home}   then open http://127.0.0.1:"
        f"{settings.api.port}/ (token in {settings.layout.api_token})"
    )
    console.print(f"  MLflow UI: {exe} ui --home {settings.home}   then open http://127.0.0.1:5000")
    console.print(f"  ground truth: {settings.layout.ground_truth}")


def _print_champions(settings: Settings) -> None:
    from cellpulse.models import tracking

    tracking.configure(settings)
    for family in tracking.MODEL_NAMES:
        champ = tracking.champion_run(family)
        if champ is None:
            continue
        metrics = tracking.run_metrics(champ[1])
        model = {k: v for k, v in metrics.items() if k.startswith("val_")}
        base = {k: v for k, v in metrics.items() if k.startswith("baseline_")}
        console.print(_metrics_table(f"{family} champion (version {champ[0]})", model, base))


def _print_latest_scores(settings: Settings) -> None:
    from cellpulse.publish import top_anomalous

    scores = settings.layout.scores.read()
    if scores.is_empty():
        return
    ranked = top_anomalous(scores, 10)
    console.print(
        _table(
            "Most anomalous cells (all scored days)",
            ["cell", "region", "worst at (UTC)", "score", "anomalous ROPs", "driving KPIs"],
            ranked.select(
                "cell_id", "region", "worst_at", "anomaly_score", "anomalous_rops", "anomaly_kpis"
            ).rows(),
        )
    )


def _self_command() -> str:
    exe = Path(sys.argv[0])
    return str(exe) if exe.name == "cellpulse" and exe.exists() else "cellpulse"


# ----------------------------------------------------------------------------- registry


@app.command()
@handles_errors
def models(
    history: Annotated[int, typer.Option(help="Champion moves to show per model.", min=0)] = 5,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List registered model versions, their aliases and hold-out metrics."""
    settings = _settings(home, config, must_exist=True)
    from cellpulse.models import tracking

    tracking.configure(settings)
    for family, name in tracking.MODEL_NAMES.items():
        versions = tracking.list_versions(family)
        if not versions:
            console.print(f"{name}: no versions yet (run `cellpulse train`)")
            continue
        console.print(
            _table(
                name,
                [
                    "version",
                    "aliases",
                    "created (UTC)",
                    "primary metric",
                    "value",
                    "run",
                    "promotion decision",
                ],
                [
                    [
                        v.version,
                        ", ".join(v.aliases) or "–",
                        v.created,
                        v.primary_metric,
                        v.primary_value,
                        v.run_id[:8],
                        v.reason,
                    ]
                    for v in versions
                ],
            )
        )
        moves = tracking.alias_history(family)[-history:] if history else []
        for m in moves:
            console.print(
                f"  {m['at'][:19]}  champion {m['from'] or '–'} -> {m['to']}  by "
                f"{m['by']}: {m['why']}",
                highlight=False,
            )


def _actor() -> str:
    return os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown"


ModelNameArg = Annotated[
    str, typer.Argument(help="anomaly or congestion (or its registered name).")
]


def _registry(home: Path | None, config: Path | None, name: str) -> tuple[Any, str]:
    """The tracking edge pointed at this home, and the model family `name` means."""
    settings = _settings(home, config, must_exist=True)
    from cellpulse.models import tracking

    tracking.configure(settings)
    return tracking, tracking.resolve_family(name)


@app.command()
@handles_errors
def promote(
    name: ModelNameArg,
    version: Annotated[str, typer.Argument(help="The version to make champion.")],
    reason: Annotated[
        str, typer.Option(help="Why; recorded with the alias move.")
    ] = "promoted by hand",
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Make a version the champion (a person's decision, recorded who/when/why)."""
    tracking, family = _registry(home, config, name)
    tracking.promote(family, version, reason, _actor())
    console.print(f"{tracking.MODEL_NAMES[family]}@champion -> version {version} ({reason})")


@app.command()
@handles_errors
def rollback(
    name: ModelNameArg,
    reason: Annotated[
        str, typer.Option(help="Why; recorded with the alias move.")
    ] = "rolled back by hand",
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Give the champion alias back to the previous champion."""
    tracking, family = _registry(home, config, name)
    version = tracking.rollback(family, reason, _actor())
    console.print(
        f"{tracking.MODEL_NAMES[family]}@champion -> version {version} ({reason}); "
        "run `cellpulse score` to re-score with it"
    )


# ----------------------------------------------------------------------------- mapping

mapping_app = typer.Typer(
    help="Source mappings for foreign PM exports (docs/mappings.md).", no_args_is_help=True
)
app.add_typer(mapping_app, name="mapping")


@mapping_app.command("list")
@handles_errors
def mapping_list() -> None:
    """The mappings shipped with cellpulse (usable by name with --mapping)."""
    from cellpulse.mapping import load_mapping, shipped_mappings

    for name in shipped_mappings():
        console.print(f"{name}: {load_mapping(name).description}")


@mapping_app.command("check")
@handles_errors
def mapping_check(
    mapping: Annotated[str, typer.Argument(help="Mapping YAML file or shipped name.")],
    sample: Annotated[Path, typer.Argument(help="A sample export file to map.")],
    rows: Annotated[int, typer.Option(help="Mapped rows to show.", min=1)] = 5,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Map a sample file: show the first mapped rows and every problem.

    Nothing is ingested."""
    from cellpulse.ingest import conform, read_input, validate
    from cellpulse.mapping import load_mapping

    settings = _settings(home, config)
    source = load_mapping(mapping)
    if not sample.is_file():
        raise CellpulseError(f"{sample}: no such file")
    conformed, problems = conform(read_input(sample, settings, source), str(sample))
    good, bad, row_problems = validate(conformed, settings, datetime.now(UTC))
    shown = conformed.select(c for c in conformed.columns if not c.startswith("_")).head(rows)
    console.print(
        f"mapping {source.name} on {sample}: {conformed.height} rows, "
        f"{good.height} valid, {bad.height} with problems"
    )
    console.print(
        _table(
            "First mapped rows (transposed)",
            ["column", *map(str, range(shown.height))],
            [[c, *shown[c].to_list()] for c in shown.columns],
        )
    )
    problems = problems + row_problems
    if problems:
        console.print(
            _table(
                "Problems",
                ["column", "rule", "rows", "first example"],
                [[p.column, p.rule, p.rows, p.example] for p in problems],
            )
        )
    else:
        console.print("no problems")


# ----------------------------------------------------------------------------- ui


@app.command()
@handles_errors
def ui(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Open the MLflow UI on this home's runs and registry (127.0.0.1, telemetry off)."""
    settings = _settings(home, config, must_exist=True)
    mlflow_exe = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    cmd = [
        mlflow_exe,
        "server",
        "--backend-store-uri",
        settings.tracking_uri,
        "--default-artifact-root",
        settings.layout.mlartifacts.as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    console.print(f"MLflow UI on http://127.0.0.1:{port} (Ctrl-C to stop)")
    raise typer.Exit(subprocess.call(cmd, env=os.environ.copy()))


# ----------------------------------------------------------------------------- backtest


@app.command()
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
    settings = _settings(home, config, must_exist=True, flows=True)
    from cellpulse.flows.backtest import backtest_flow
    from cellpulse.models.backtest import summarise

    result = backtest_flow(settings, folds, labels)
    for family, family_folds in result.folds.items():
        console.print(
            _table(
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


# ----------------------------------------------------------------------------- serve


@app.command()
@handles_errors
def serve(home: HomeOpt = None, config: ConfigOpt = None) -> None:
    """Register the scheduled deployments with a Prefect server and run them until stopped:
    ingest+score every ROP, features daily, training weekly, monitoring daily (schedules in
    settings `schedules.*`). Needs a real Prefect server: see infra/ and PREFECT_API_URL."""
    settings = _settings(home, config, must_exist=True)
    api_url = os.environ.get("PREFECT_API_URL")
    if not api_url:
        raise CellpulseError(
            "`cellpulse serve` needs a Prefect server: start one (infra/prefect-server.sh, or "
            "`prefect server start`), then set PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    from prefect import serve as prefect_serve

    from cellpulse.flows.deployments import build_deployments, ensure_training_limit, schedules

    deployments = build_deployments(settings, config)
    ensure_training_limit()
    console.print(
        _table(
            f"cellpulse deployments on {api_url} (Ctrl-C to stop)",
            ["deployment", "schedule"],
            [(name, _describe(schedule)) for name, schedule in schedules(settings).items()],
        )
    )
    prefect_serve(*deployments, print_starting_message=False)


def _describe(schedule: Any) -> str:
    if schedule is None:
        return "not scheduled (run on demand)"
    if getattr(schedule, "cron", None):
        return f"cron {schedule.cron} ({schedule.timezone or 'UTC'})"
    return f"every {schedule.interval}"


# ----------------------------------------------------------------------------- backfill


@app.command()
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
    settings = _settings(home, config, must_exist=True, flows=True)
    from cellpulse.flows.backfill import backfill_flow

    wanted = tuple(s.strip() for s in stages.split(",") if s.strip())
    first, last = start.date(), end.date()
    summary = backfill_flow(settings, DayWindow(first, last), wanted, force)
    ran = {d: s for d, s in summary.ran.items() if s}
    per_day = sorted(summary.seconds[d] for d in ran)
    timing = (
        f"; {per_day[len(per_day) // 2]:.1f} s per day (median), {sum(per_day):.0f} s in all"
        if per_day
        else ""
    )
    console.print(
        f"backfill {first}..{last} ({', '.join(wanted)}): {len(summary.days)} days with KPIs, "
        f"{len(ran)} run, {len(summary.skipped)} already current{timing} -> "
        f"{settings.layout.lake / 'features'} and {settings.layout.lake / 'scores'}"
    )


# ----------------------------------------------------------------------------- monitor


@app.command()
@handles_errors
def monitor(
    retrain: Annotated[
        bool | None,
        typer.Option(
            "--retrain/--no-retrain",
            help="Retrain when a check is crossed (default: monitor.retrain_on_drift).",
            show_default=False,
        ),
    ] = None,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Check whether the network changed under the champion: feature drift (PSI) against its
    training window, counters that stopped reporting, cells appearing or disappearing, score
    distribution shift, and recall on labelled faults. Logged to Prefect and MLflow
    (experiment cellpulse-monitoring); a crossed threshold retrains."""
    settings = _settings(home, config, must_exist=True, flows=True)
    if retrain is not None:
        settings = settings.model_copy(
            update={"monitor": settings.monitor.model_copy(update={"retrain_on_drift": retrain})}
        )
    from cellpulse.flows.monitor import monitor_flow

    outcome = monitor_flow(settings)
    report = outcome.report
    console.print(
        _table(
            f"Monitoring: recent {report.recent[0]}..{report.recent[1]} vs training window "
            f"{report.reference[0]}..{report.reference[1]}",
            ["check", "value", "threshold", "crossed", "summary"],
            [
                (
                    c.name,
                    f"{c.value:.3f}",
                    f"{c.threshold:g}",
                    "YES" if c.breached else "no",
                    c.summary,
                )
                for c in report.checks
            ],
        )
    )
    verdict = (
        "retrained (see `cellpulse models`)"
        if outcome.retrained
        else "retraining needed but disabled"
        if report.needs_retraining
        else "no retraining needed"
    )
    console.print(
        f"monitor: {len(report.breached)} of {len(report.checks)} checks crossed; {verdict}; "
        f"MLflow run {outcome.mlflow_run_id} (experiment cellpulse-monitoring)"
    )


# ----------------------------------------------------------------------------- labels


@app.command()
@handles_errors
def labels(
    out: Annotated[
        Path | None,
        typer.Option(help="File to write (parquet). Default: <home>/labels/operator.parquet."),
    ] = None,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Export people's verdicts on alerts as a labels file for `train --labels` and
    `evaluate --labels`: acknowledged or closed alerts as confirmed faults (kind fault),
    false alarms as kind false_alarm (not events, kept for reference)."""
    from cellpulse import lake
    from cellpulse.opsstore import open_ops_store, ops_store_location
    from cellpulse.publish import verdicts_as_events

    settings = _settings(home, config, must_exist=True)
    with open_ops_store(settings, read_only=True) as store:
        verdicts = store.feedback_labels()
    events = verdicts_as_events(verdicts)
    target = out or settings.layout.operator_labels
    lake.atomic_write_parquet(events, target)
    confirmed = int((events["kind"] == "fault").sum())
    console.print(
        f"labels: {confirmed} confirmed event(s) and {events.height - confirmed} false "
        f"alarm(s) from {ops_store_location(settings)} -> {target}\n"
        f"use them with: cellpulse evaluate --labels {target}"
    )


# ----------------------------------------------------------------------------- api


@app.command()
@handles_errors
def api(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default: api.host, 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: api.port, 8750).")] = None,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the ops web page and HTTP API: ranked cells, a cell's KPIs and scores, alerts
    (acknowledge, close, false alarm), models in use. Every /api/ route needs the bearer
    token: api.token (CELLPULSE_API__TOKEN, at least 32 characters), or else the one kept in
    <home>/api_token (made on first start, readable by its owner only)."""
    import uvicorn

    from cellpulse.api import create_app

    settings = _settings(home, config, must_exist=True)
    bind_host = host or settings.api.host
    bind_port = port or settings.api.port
    web_app = create_app(settings)
    token_source = (
        "api.token setting" if settings.api.token is not None else str(settings.layout.api_token)
    )
    console.print(
        f"cellpulse ops page and API on http://{bind_host}:{bind_port}/ "
        f"(OpenAPI schema: /openapi.json); bearer token in {token_source}. Ctrl-C to stop."
    )
    uvicorn.run(web_app, host=bind_host, port=bind_port, log_level="warning")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
