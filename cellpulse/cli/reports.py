"""What the commands print about a stage's result: one summary line each, and the tables
of metrics, ranked cells and the scoreboard. Shared by the stage commands, `run` and `demo`."""

from __future__ import annotations

from datetime import date
from typing import Any

from rich.table import Table

from cellpulse.cli.edge import console, fmt, table
from cellpulse.models.headline import HEADLINE
from cellpulse.redaction import redact_url
from cellpulse.settings import Settings

ANOMALY_METRICS = (
    "events",
    "event_recall",
    "median_detection_delay_rops",
    "alerts",
    "alert_precision",
    "false_alarms_per_100_cell_days",
    "pr_auc",
    # Every detector at the same false-alarm budget (train.gate_false_alarms_per_100_cell_days).
    "recall_at_budget",
    "alert_precision_at_budget",
    "median_detection_delay_rops_at_budget",
)
CONGESTION_METRICS = HEADLINE["congestion"]
RANKED_COLUMNS = ["cell", "region", "worst at (UTC)", "score", "anomalous ROPs", "driving KPIs"]
RANKED_FIELDS = ("cell_id", "region", "worst_at", "anomaly_score", "anomalous_rops", "anomaly_kpis")


def print_simulation(summary: Any, start: date, seconds: float) -> None:
    """What the simulator wrote: cells, rows, files and how they were delivered, and the
    ground truth by event type."""
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


def print_ingest(summary: Any) -> None:
    """Files ingested, skipped and rejected; rows accepted, replaced and quarantined."""
    console.print(
        f"ingest: {summary.count('ingested')} files ingested, {summary.count('skipped')} "
        f"already ingested, {summary.count('duplicate')} duplicate deliveries, "
        f"{len(summary.rejected)} rejected; {summary.rows_accepted:,} rows accepted "
        f"({summary.rows_replaced:,} of them replacing earlier deliveries), "
        f"{summary.rows_quarantined:,} quarantined; {summary.partitions_written} partitions "
        f"written -> {summary.lake_dir}"
    )
    console.print(f"  {summary.coverage.line()}")
    if summary.rows_quarantined or summary.rejected:
        console.print(f"  reports: {summary.quarantine_dir}")


def metrics_table(family: str, metrics: dict[str, float], baselines: dict[str, float]) -> Table:
    """A model's hold-out metrics (`val_*`), each beside the baselines' figure for it
    (`baseline_<name>_<metric>`)."""
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
        rows.append([key, value, ", ".join(f"{k} {fmt(v)}" for k, v in base.items()) or "–"])
    return table(f"{family}: hold-out metrics", ["metric", "model", "baselines"], rows)


def print_train(result: Any, settings: Settings) -> None:
    """Each family's metrics, what its model covers of the KPIs and whether its candidate
    became champion, and why; each family that could not train, and why; and what the
    training data was sampled from."""
    if getattr(result, "sample", None) is not None:
        console.print(f"training data: {result.sample.describe()}")
    for family, logged in result.logged.items():
        cand = result.candidates[family]
        console.print(metrics_table(family, cand.metrics, cand.baselines))
        verdict = (
            "[green]promoted to champion[/]"
            if logged.decision.promote
            else "[yellow]not promoted[/]"
        )
        if cand.coverage:
            console.print(f"  {cand.coverage}")
        if "supervised" in cand.params:
            console.print(f"  fault classifier: {cand.params['supervised']}")
        if family in result.tuning:
            console.print(f"  tuning: {result.tuning[family]}")
        console.print(
            f"  {logged.name} version {logged.version}: {verdict} — {logged.decision.reason}"
        )
    for family, why in result.not_trained.items():
        console.print(f"{family}: [yellow]{why}[/]")
    console.print(
        f"MLflow: {redact_url(settings.tracking_uri)} "
        f"(open with `cellpulse ui --home {settings.home}`)"
    )


def print_score(summary: Any, top: int = 10) -> None:
    """What was scored and published, the webhook's delivery, and the `top` most anomalous
    and most congestion-prone cells."""
    from cellpulse.publish import top_anomalous, top_congestion

    console.print(
        f"score: {len(summary.days)} days ({summary.days[0]} to {summary.days[-1]}), "
        f"{summary.rows:,} rows, {summary.cells} cells, {summary.anomalous_rops} anomalous "
        f"ROPs, {summary.alerts} alerts ({summary.new_alerts} new; "
        f"{summary.open_alerts} still open) -> {summary.lake_dir} and {summary.ops_store}"
    )
    for family, scored_by in summary.families.items():
        console.print(f"  {family}: {scored_by}")
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
        table("Most anomalous cells", RANKED_COLUMNS, ranked.select(RANKED_FIELDS).rows())
    )
    risk = top_congestion(summary.scores, top)
    if risk.is_empty():
        return
    console.print(
        table(
            "Congestion risk on the newest day",
            ["cell", "region", "peak at (UTC)", "P(congested)", "horizon"],
            risk.select(
                "cell_id", "region", "peak_at", "congestion_prob", "congestion_horizon"
            ).rows(),
        )
    )


def detector_columns(board: Any, family: str, metrics: list[str]) -> list[list[Any]]:
    """One family's whole-network figures as rows of a table: a header row of detectors
    (in the board's order), then one row per metric with each detector's value (NaN where a
    detector has none)."""
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


def anomaly_by_type(board: Any) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The anomaly figures per event type: the headers and one row per type (in the board's
    order) with the model's event count, each detector's recall and the model's median delay.

    Each column is named where it is made, from the (detector, metric) it holds; a pair the
    board lacks gives no column, a type without a figure gives None.
    """
    import polars as pl

    typed = board.filter((pl.col("family") == "anomaly") & (pl.col("slice_kind") == "type"))
    detectors = typed["detector"].unique(maintain_order=True).to_list()
    wanted = [
        ("model", "events", "events"),
        *((d, "event_recall", f"recall ({d})") for d in detectors),
        ("model", "median_detection_delay_rops", "median delay (ROPs, model)"),
    ]
    present = set(typed.select("detector", "metric").unique().iter_rows())
    columns = [(d, m, name) for d, m, name in wanted if (d, m) in present]
    per_type = typed.group_by("slice", maintain_order=True).agg(
        pl.col("value")
        .filter((pl.col("detector") == d) & (pl.col("metric") == m))
        .first()
        .alias(name)
        for d, m, name in columns
    )
    return ["type", *(name for _, _, name in columns)], per_type.rows()


def print_scoreboard(result: Any) -> None:
    """The evaluation's scoreboard: which models scored, anomaly and congestion figures of
    the model beside its baselines, the anomaly figures per event type, and each family the
    board skipped with the reason."""
    board = result.board
    console.print(f"scoreboard {result.window[0]} to {result.window[1]} ({result.note})")
    for r in result.scored_by.iter_rows(named=True):
        console.print(
            f"{r['family']} scored by {r['model']} (version {r['version']}): {r['rows']:,} rows"
        )
    families = set(board["family"].to_list())
    if "anomaly" in families:
        precision_at_k = [
            m for m in board["metric"].unique().to_list() if m.startswith("precision_at_")
        ]
        head, *rows = detector_columns(board, "anomaly", [*ANOMALY_METRICS, *precision_at_k])
        console.print(table("Anomaly: model vs baseline", ["metric", *head], rows))
        headers, by_type = anomaly_by_type(board)
        if by_type:
            console.print(table("Anomaly by type", headers, by_type))
    if "congestion" in families:
        head, *rows = detector_columns(board, "congestion", list(CONGESTION_METRICS))
        console.print(table("Congestion: model vs baselines", ["metric", *head], rows))
    for family, why in result.skipped.items():
        console.print(f"{family}: skipped ({why})")
    console.print(f"slices (area type, band, region) and everything above: {result.report}")
    if result.logged_runs:
        console.print(f"logged to MLflow runs {', '.join(r[:8] for r in result.logged_runs)}")


def print_monitoring(outcome: Any) -> None:
    """The monitoring run's checks and verdict, or why nothing was checked."""
    report = outcome.report
    if not report.checks:
        console.print(f"monitor: recent {report.recent[0]}..{report.recent[1]}: {report.note}")
        return
    console.print(
        table(
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


def print_champions() -> None:
    """Each family's champion and its hold-out metrics, as registered in the store the
    command pointed MLflow at (`command_settings(..., tracking=True)`)."""
    from cellpulse.models import tracking

    for family in tracking.MODEL_NAMES:
        champ = tracking.champion_run(family)
        if champ is None:
            continue
        metrics = tracking.run_metrics(champ[1])
        model = {k: v for k, v in metrics.items() if k.startswith("val_")}
        base = {k: v for k, v in metrics.items() if k.startswith("baseline_")}
        console.print(metrics_table(f"{family} champion (version {champ[0]})", model, base))


def score_scale(threshold: float | None, settings: Settings) -> str:
    """How to read the two scores: the anomaly score's unit and the champion's alert
    threshold (`threshold`; None while the baseline scores), the congestion probability's
    range and horizon."""
    anomaly = (
        f"spreads of the cell's own KPIs at that hour (0 = as usual); a ROP is anomalous "
        f"at ≥ {threshold:.1f}, an alert opens after {settings.alerts.consecutive_rops} in a row"
        if threshold is not None
        else "the baseline's per-cell z-score (no trained champion yet)"
    )
    congestion = settings.congestion
    horizon = (
        f"within the next {congestion.horizon_minutes} minutes"
        if congestion.horizon == "minutes"
        else "in the cell's busy hour tomorrow"
    )
    return (
        f"anomaly score: {anomaly}. congestion: probability 0–1 that the cell is congested "
        f"{horizon}."
    )


def print_score_scale(settings: Settings) -> None:
    """The scale of the printed scores, with the anomaly champion's alert threshold (read
    from its MLflow run: MLflow must point at this home)."""
    from cellpulse.models import tracking

    champ = tracking.champion_run("anomaly")
    threshold = tracking.run_metrics(champ[1]).get("threshold") if champ else None
    console.print(score_scale(threshold, settings))


def print_latest_scores(settings: Settings) -> None:
    """The most anomalous cells over every scored day (when nothing new was scored)."""
    from cellpulse.publish import top_anomalous

    scores = settings.layout.scores.read()
    if scores.is_empty():
        return
    ranked = top_anomalous(scores, 10)
    console.print(
        table(
            "Most anomalous cells (all scored days)",
            RANKED_COLUMNS,
            ranked.select(RANKED_FIELDS).rows(),
        )
    )


def mlflow_ui_url(port: int = 5000) -> str:
    """The MLflow UI's address in its model-training view (MLflow 3 opens in GenAI mode)."""
    return f"http://127.0.0.1:{port}/#/experiments?workflowType=machine_learning"
