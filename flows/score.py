"""Flow: features + both @champion models -> lake/scores, the ops store, a Prefect artifact."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import polars as pl
from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from cellpulse.errors import NoDataError
from cellpulse.features.spec import FeatureParams, spec_for
from cellpulse.features.store import read_features
from cellpulse.flows.common import dask_runner, retry_on_io
from cellpulse.ledger import Ledger
from cellpulse.models import tracking
from cellpulse.models.scoring import predictor, score_features
from cellpulse.notify import Delivery, alert_payload, post_alerts
from cellpulse.opsstore import open_ops_store, ops_store_location
from cellpulse.publish import ModelRef, derive_alerts, markdown_report, top_cells_table
from cellpulse.settings import Settings
from cellpulse.window import DayWindow


@dataclass(frozen=True)
class ScoreSummary:
    """What a scoring run published: counts for people, the tables, and where they went."""

    days: list[date]
    rows: int
    cells: int
    anomalous_rops: int
    alerts: int
    open_alerts: int
    scores: pl.DataFrame
    alerts_table: pl.DataFrame
    lake_dir: Path
    ops_store: str
    new_alerts: int = 0
    webhook: Delivery | None = None

    @classmethod
    def of(
        cls,
        days: list[date],
        scores: pl.DataFrame,
        alerts: pl.DataFrame,
        settings: Settings,
        new_alerts: int,
        webhook: Delivery | None,
    ) -> ScoreSummary:
        """The summary of `scores` and `alerts` published for `days`."""
        return cls(
            days,
            scores.height,
            scores["cell_id"].n_unique(),
            int(scores["is_anomaly"].sum()),
            alerts.height,
            int((alerts["status"] == "open").sum()),
            scores,
            alerts,
            settings.layout.scores.root,
            ops_store_location(settings),
            new_alerts,
            webhook,
        )


@task(
    name="load-champions",
    retries=2,
    retry_delay_seconds=3,
    retry_condition_fn=retry_on_io,
    cache_policy=NO_CACHE,
)
def load_champions() -> tuple[tracking.Champion, tracking.Champion]:
    """Both families' `@champion` models from the registry."""
    return tracking.load_champion("anomaly"), tracking.load_champion("congestion")


@task(name="score-days", cache_policy=NO_CACHE)
def score_days(
    settings: Settings, days: list[date], anomaly: tracking.Champion, congestion: tracking.Champion
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The score table of `days`, and the anomaly model's expected band for each watched KPI."""
    spec = spec_for(FeatureParams.of(settings))
    # One day of context before the first day, so the consecutive-ROP alert rule sees
    # the run that leads into it.
    day_before = days[0] - timedelta(days=1)
    first = day_before if settings.layout.features.files(day_before, day_before) else days[0]
    features = read_features(settings.layout, DayWindow(first, days[-1]), spec)
    predict = predictor(settings)
    scores = score_features(
        features,
        anomaly.model,
        congestion.model,
        ModelRef(anomaly.name, anomaly.version, anomaly.run_id),
        ModelRef(congestion.name, congestion.version, congestion.run_id),
        settings,
        datetime.now(UTC),
        spec.hash(),
        predict=predict,
    )
    in_days = pl.col("ts").dt.date().is_in(days)
    return scores.filter(in_days), anomaly.model.band(features.filter(in_days), predict=predict)


@flow(name="score-on-dask")
def score_on_dask(
    settings: Settings, days: list[date], anomaly: tracking.Champion, congestion: tracking.Champion
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One scoring task per day on the Dask cluster (each reads its day and the one before,
    as the single-process path does), gathered here for alerts and publishing."""
    futures = score_days.map(
        unmapped(settings), [[d] for d in days], unmapped(anomaly), unmapped(congestion)
    )
    parts = [f.result() for f in futures]
    return (
        pl.concat([p[0] for p in parts]).sort("cell_id", "ts"),
        pl.concat([p[1] for p in parts]).sort("cell_id", "ts"),
    )


@task(name="write-scores", retries=2, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def write_scores(
    settings: Settings, scores: pl.DataFrame, band: pl.DataFrame, days: list[date]
) -> None:
    """Each day's scores and expected bands into the lake, replacing what was there."""
    for ds, table in ((settings.layout.scores, scores), (settings.layout.expected, band)):
        with_day = table.with_columns(pl.col("ts").dt.date().alias("_day"))
        for day in days:
            ds.replace_day(with_day.filter(pl.col("_day") == day).drop("_day"), day)


@task(
    name="publish-ops-store",
    retries=3,
    retry_delay_seconds=5,
    retry_condition_fn=retry_on_io,
    cache_policy=NO_CACHE,
)
def publish(
    settings: Settings, scores: pl.DataFrame, alerts: pl.DataFrame, days: list[date]
) -> list[str]:
    """Scores and alerts into the ops store; the ids of alerts it did not hold before."""
    start = datetime.combine(days[0], time(), tzinfo=UTC)
    end = datetime.combine(days[-1], time(), tzinfo=UTC) + timedelta(days=1)
    with open_ops_store(settings) as store:
        store.replace_scores(scores, start, end)
        new = store.upsert_alerts(alerts)
    with Ledger(settings.layout.ledger) as ledger:
        ledger.clear_stale("scores", days)
    return new


@task(name="notify-webhook", cache_policy=NO_CACHE)
def notify(settings: Settings, alerts: pl.DataFrame, new: list[str]) -> Delivery | None:
    """New alerts to the webhook, if one is set. Never fails the flow: the delivery retries
    on its own and a receiver that stays down is logged and reported."""
    url = settings.alerts.webhook_url.get_secret_value() if settings.alerts.webhook_url else None
    opened = alerts.filter(pl.col("alert_id").is_in(new) & (pl.col("status") == "open"))
    if not url or opened.is_empty():
        return None
    payload = alert_payload(opened, settings.ops_page_url)
    delivery = post_alerts(
        url, payload, settings.alerts.webhook_retries, settings.alerts.webhook_timeout_s
    )
    if not delivery.delivered:
        get_run_logger().warning(
            "webhook %s: %d new alert(s) not delivered after %d attempt(s): %s",
            delivery.url,
            delivery.alerts,
            delivery.attempts,
            delivery.error,
        )
    return delivery


@task(name="top-cells-artifacts", cache_policy=NO_CACHE)
def show_top_cells(settings: Settings, scores: pl.DataFrame, alerts: pl.DataFrame) -> None:
    """The cells needing attention as Prefect artifacts (a report and a linked table)."""
    create_markdown_artifact(
        key="top-cells",
        markdown=markdown_report(scores, alerts),
        description="cellpulse: cells needing attention",
    )
    create_table_artifact(
        key="top-cells-table",
        table=top_cells_table(scores, alerts, settings.ops_page_url),
        description=f"cellpulse: worst cells at the newest ROP (links: {settings.ops_page_url})",
    )


@flow(name="score")
def score_flow(settings: Settings, days: list[date]) -> ScoreSummary:
    """Score `days` with both champions and publish the result everywhere ops reads it."""
    if not days:
        raise NoDataError("no days to score; pass --from/--to or ingest new data first")
    tracking.configure(settings)
    anomaly, congestion = load_champions()
    score = (  # one task per day on the Dask cluster, or all days here
        score_on_dask.with_options(task_runner=dask_runner(settings))
        if settings.dask_address
        else score_days
    )
    scores, band = score(settings, days, anomaly, congestion)
    alerts = derive_alerts(scores, settings.alerts.clear_after_rops, settings.rop_minutes)
    write_scores(settings, scores, band, days)
    new = publish(settings, scores, alerts, days)
    delivery = notify(settings, alerts, new)
    show_top_cells(settings, scores, alerts)
    return ScoreSummary.of(days, scores, alerts, settings, len(new), delivery)
