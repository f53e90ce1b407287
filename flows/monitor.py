"""Flow: compare the recent network with the champion's training window; log every check
(Prefect artifact, MLflow runs) and retrain when one is crossed."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from cellpulse import monitoring
from cellpulse.features.spec import FeatureParams, spec_for
from cellpulse.features.store import load_labels
from cellpulse.flows.common import retry_on_io
from cellpulse.models import tracking
from cellpulse.monitoring import MonitorReport, Samples
from cellpulse.settings import Settings


@dataclass(frozen=True)
class MonitorOutcome:
    """The monitoring report, its MLflow run, and whether it retrained."""

    report: MonitorReport
    mlflow_run_id: str
    retrained: bool


@task(name="monitor-samples", retries=1, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def load_samples(settings: Settings) -> Samples:
    """Samples of the recent days and of the champion's training window."""
    layout = settings.layout
    days = monitoring.monitor_days(
        layout.features.dates(),
        layout.scores.dates(),
        tracking.champion_train_window("anomaly"),
        settings.monitor.recent_days,
    )
    return monitoring.read_samples(layout, days, settings.monitor.sample_rows_per_day)


@task(name="monitor-checks", cache_policy=NO_CACHE)
def run_checks(settings: Settings, samples: Samples) -> MonitorReport:
    """Every check; performance against the simulator's ground truth where it exists and
    people's verdicts on alerts (`cellpulse labels`: confirmed faults count, false alarms
    are not events)."""
    events = load_labels([settings.layout.truth_events, settings.layout.operator_labels])
    columns = spec_for(FeatureParams.of(settings)).network_columns()
    return monitoring.run_checks(samples, columns, events, settings.monitor)


@flow(name="monitor")
def monitor_flow(settings: Settings) -> MonitorOutcome:
    """Drift, availability, topology, score-shift and performance checks; retrain if needed
    (and `monitor.retrain_on_drift` allows it)."""
    tracking.configure(settings)
    report = run_checks(settings, load_samples(settings))
    create_markdown_artifact(
        key="monitoring", markdown=report.markdown(), description="cellpulse monitoring"
    )
    run_id = tracking.log_monitoring(report, settings)
    retrain = report.needs_retraining and settings.monitor.retrain_on_drift
    if retrain:
        from cellpulse.flows.train import train_flow

        train_flow(settings)
    return MonitorOutcome(report, run_id, retrain)
