"""Flow: compare the recent network with the champion's training window; log every check
(Prefect artifact, MLflow runs) and retrain when one is crossed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from cellpulse import lake, monitoring
from cellpulse.errors import NoDataError
from cellpulse.features.spec import spec_for
from cellpulse.features.store import (
    load_events,
)
from cellpulse.models import tracking
from cellpulse.monitoring import MonitorReport
from cellpulse.settings import Settings


@dataclass(frozen=True)
class MonitorOutcome:
    report: MonitorReport
    mlflow_run_id: str
    retrained: bool


def sample_days(ds: lake.Dataset, days: list[date], per_day: int, seed: int = 0) -> pl.DataFrame:
    """Up to `per_day` rows of each day, read one day at a time (bounded memory at any
    network size); a fixed seed keeps repeated checks comparable."""
    frames = []
    for day in days:
        rows = ds.read(day, day)
        if rows.height:
            frames.append(rows.sample(min(per_day, rows.height), seed=seed))
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


@task(name="monitor-checks", cache_policy=NO_CACHE)
def run_checks(settings: Settings) -> MonitorReport:
    cfg = settings.monitor
    tracking.configure(settings)
    ref_start, ref_end = tracking.champion_train_window("anomaly")
    available = settings.layout.features.dates()
    if not available:
        raise NoDataError("no features to monitor; run `cellpulse features` first")
    recent = [d for d in available if d > available[-1] - timedelta(days=cfg.recent_days)]
    # The lake's first day has no history behind its windows (every ROP before it "missing"):
    # it describes the start of the data, not the network.
    reference = [d for d in available if ref_start <= d <= ref_end and d > available[0]]
    if not reference:
        raise NoDataError(
            f"the champion's training window {ref_start}..{ref_end} has no features left; "
            "rebuild them or retrain"
        )
    n = cfg.sample_rows_per_day
    feats_ref = sample_days(settings.layout.features, reference, n)
    feats_now = sample_days(settings.layout.features, recent, n)
    kpis_ref = sample_days(settings.layout.kpi, reference, n * 4)
    kpis_now = sample_days(settings.layout.kpi, recent, n * 4)
    scored = settings.layout.scores.dates()
    # Scores of the training window if they exist, else the earliest scored week.
    score_ref_days = [d for d in scored if ref_start <= d <= ref_end] or scored[: cfg.recent_days]
    scores_ref = sample_days(settings.layout.scores, score_ref_days, n)
    scores_now = settings.layout.scores.read(recent[0], recent[-1])
    # Calendar features differ between any two windows by construction: not drift.
    spec = spec_for(settings)
    columns = [c for c in spec.network_columns() if c in feats_ref.columns]
    checks = [
        monitoring.feature_psi(feats_ref, feats_now, columns, cfg.psi_threshold),
        monitoring.counter_availability(kpis_ref, kpis_now, cfg.availability_drop),
        monitoring.topology_change(kpis_ref, kpis_now, cfg.topology_change_share),
    ]
    if scores_ref.height and scores_now.height:
        checks.append(monitoring.score_shift(scores_ref, scores_now, cfg.score_psi_threshold))
    # Ground truth where it exists (the simulator), and people's verdicts on alerts
    # (`cellpulse labels`): confirmed faults count, false alarms are not events.
    labelled = [
        e
        for path in (
            settings.layout.truth_events,
            settings.layout.operator_labels,
        )
        if (e := load_events(path)) is not None
    ]
    events = (
        pl.concat(
            [
                e.select("cell_id", "start", "end", "kind")
                if "kind" in e.columns
                else e.select("cell_id", "start", "end", pl.lit("fault").alias("kind"))
                for e in labelled
            ]
        )
        if labelled
        else None
    )
    performance = monitoring.champion_performance(scores_now, events, cfg.min_event_recall)
    if performance is not None:
        checks.append(performance)
    return MonitorReport(
        (str(reference[0]), str(reference[-1])), (str(recent[0]), str(recent[-1])), checks
    )


def report_markdown(report: MonitorReport) -> str:
    lines = [
        f"# cellpulse monitoring: {report.recent[0]}..{report.recent[1]} vs the champion's "
        f"training window {report.reference[0]}..{report.reference[1]}",
        "",
        "| check | value | threshold | crossed | summary |",
        "|---|---:|---:|---|---|",
    ]
    for c in report.checks:
        value = "n/a" if math.isnan(c.value) else f"{c.value:.3f}"
        crossed = "**yes**" if c.breached else "no"
        lines.append(f"| {c.name} | {value} | {c.threshold:g} | {crossed} | {c.summary} |")
    lines += ["", "Retraining: " + ("**triggered**" if report.needs_retraining else "not needed")]
    return "\n".join(lines) + "\n"


@flow(name="monitor")
def monitor_flow(settings: Settings) -> MonitorOutcome:
    """Drift, availability, topology, score-shift and performance checks; retrain if needed."""
    report = run_checks(settings)
    create_markdown_artifact(
        key="monitoring", markdown=report_markdown(report), description="cellpulse monitoring"
    )
    run_id = tracking.log_monitoring(report, settings)
    retrained = False
    if report.needs_retraining and settings.monitor.retrain_on_drift:
        from cellpulse.flows.train import train_flow

        train_flow(settings)
        retrained = True
    return MonitorOutcome(report, run_id, retrained)
