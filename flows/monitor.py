"""Flow: compare the recent network with the champion's training window; log every check
(Prefect artifact, MLflow runs) and retrain when one is crossed."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from cellpulse import monitoring, monitoring_plots
from cellpulse.errors import NoChampionError
from cellpulse.features.spec import FeatureParams
from cellpulse.features.store import lake_spec, load_labels
from cellpulse.flows.common import retry_on_io
from cellpulse.models import tracking, tracking_drift, tracking_runs
from cellpulse.models.family import family_names
from cellpulse.monitoring import MonitorReport, Samples
from cellpulse.settings import Settings
from cellpulse.window import DayWindow

NO_CHAMPION = "no champion yet; drift not checked"


@dataclass(frozen=True)
class MonitorOutcome:
    """The monitoring report, its MLflow run, and whether it retrained."""

    report: MonitorReport
    mlflow_run_id: str  # empty when nothing was checked
    retrained: bool


@task(name="champion-window", retries=2, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def champion_window() -> tuple[bool, DayWindow | None]:
    """Whether any family has a champion, and the training window drift is measured from:
    the anomaly champion's, else another family's."""
    any_champion, window = False, None
    for family in sorted(family_names(), key=lambda f: f != "anomaly"):
        try:
            window = tracking.champion_train_window(family)
        except NoChampionError:
            continue
        any_champion = True
        if window is not None:
            break
    return any_champion, window


@task(name="monitor-samples", retries=1, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def load_samples(settings: Settings, trained_on: DayWindow | None) -> Samples:
    """Samples of the recent days and of the champion's training window."""
    layout = settings.layout
    days = monitoring.monitor_days(
        layout.features.dates(),
        layout.scores.dates(),
        trained_on,
        settings.monitor.recent_days,
    )
    return monitoring.read_samples(layout, days, settings.monitor.sample_rows_per_day)


@task(name="monitor-checks", cache_policy=NO_CACHE)
def run_checks(settings: Settings, samples: Samples) -> MonitorReport:
    """Every check; performance against the simulator's ground truth where it exists and
    people's verdicts on alerts (`cellpulse labels`: confirmed faults count, false alarms
    are not events)."""
    events = load_labels([settings.layout.truth_events, settings.layout.operator_labels])
    columns = lake_spec(settings.layout, FeatureParams.of(settings)).network_columns()
    return monitoring.run_checks(samples, columns, events, settings.monitor)


@task(name="drift-picture", cache_policy=NO_CACHE)
def show_drift(settings: Settings, samples: Samples, report: MonitorReport, run_id: str) -> None:
    """The feature drift as a picture (training window vs recent, most shifted first) on the
    monitoring MLflow run and as a Prefect artifact."""
    psi = next((c for c in report.checks if c.name == "psi" and c.detail.height), None)
    if psi is None:
        return
    reference, recent = samples.features
    picture = monitoring_plots.drift_picture(reference, recent, psi, settings.monitor.psi_threshold)
    uri = tracking_drift.log_drift_picture(run_id, picture)
    create_markdown_artifact(
        key="feature-drift",
        markdown=monitoring_plots.drift_markdown(picture, psi, uri),
        description="cellpulse feature drift: training window vs recent",
    )


@flow(name="monitor")
def monitor_flow(settings: Settings) -> MonitorOutcome:
    """Drift, availability, topology, score-shift and performance checks; retrain if needed
    (and `monitor.retrain_on_drift` allows it). While no family has a champion there is
    no training window to compare with: the report says so and nothing is checked."""
    tracking.configure(settings)
    any_champion, trained_on = champion_window()
    if not any_champion:
        report = monitoring.unchecked(
            settings.layout.features.dates(), settings.monitor.recent_days, NO_CHAMPION
        )
        create_markdown_artifact(
            key="monitoring", markdown=report.markdown(), description="cellpulse monitoring"
        )
        return MonitorOutcome(report, "", False)
    samples = load_samples(settings, trained_on)
    report = run_checks(settings, samples)
    create_markdown_artifact(
        key="monitoring", markdown=report.markdown(), description="cellpulse monitoring"
    )
    run_id = tracking_runs.log_monitoring(report, settings)
    show_drift(settings, samples, report, run_id)
    retrain = report.needs_retraining and settings.monitor.retrain_on_drift
    logger = get_run_logger()
    logger.info(
        "monitor: recent days %s..%s against the training window %s..%s: %d of %d checks "
        "crossed (%s); %s",
        *report.recent,
        *report.reference,
        len(report.breached),
        len(report.checks),
        ", ".join(c.name for c in report.breached) or "none",
        "retraining the models" if retrain else "no retraining",
    )
    if retrain:
        from cellpulse.flows.train import train_flow

        train_flow(settings)
    return MonitorOutcome(report, run_id, retrain)
