"""Flow: features + each family's @champion (or, until it has one, its baseline) ->
lake/scores, the ops store, a Prefect artifact."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import polars as pl
from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from cellpulse import lake
from cellpulse.errors import NoDataError
from cellpulse.features.spec import FeatureParams, FeatureSpec
from cellpulse.features.store import (
    feature_chunks,
    lake_spec,
    read_features,
    read_features_since,
)
from cellpulse.flows.common import dask_runner, retry_on_io
from cellpulse.ledger import Ledger
from cellpulse.models import tracking
from cellpulse.models.anomaly import EXPLAIN_SPAN
from cellpulse.models.family import families
from cellpulse.models.params import ModelParams
from cellpulse.models.scoring import (
    SCORE_CHUNK_ROWS,
    Scorer,
    baseline_scorer,
    champion_scorer,
    predictor,
    score_rops,
    scored_chunks,
    write_scored,
)
from cellpulse.notify import Delivery, alert_payload, post_alerts
from cellpulse.opsstore import open_ops_store, ops_store_location
from cellpulse.publish import (
    ModelRef,
    advance_alerts,
    derive_alerts,
    markdown_report,
    top_cells_table,
)
from cellpulse.ropstate import RopState, context_rops
from cellpulse.settings import Settings
from cellpulse.window import DayWindow


@dataclass(frozen=True)
class ScoreSummary:
    """What a scoring run published: counts for people, the tables, where they went, and
    per family what scored it (a champion, its baseline, or nothing, and why)."""

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
    families: dict[str, str] = field(default_factory=dict)  # family -> what scored it

    @classmethod
    def of(
        cls,
        days: list[date],
        scores: pl.DataFrame,
        alerts: pl.DataFrame,
        settings: Settings,
        new_alerts: int,
        webhook: Delivery | None,
        families: dict[str, str],
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
            families,
        )


@dataclass(frozen=True)
class NoChampion:
    """A family without a champion, and why (what training last did for it)."""

    family: str
    why: str


def no_champion(family: str) -> NoChampion:
    """Why `family` has no champion: nothing trained yet, or its newest version lost."""
    versions = tracking.list_versions(family)
    if not versions:
        return NoChampion(family, "no model trained yet")
    newest = versions[0]
    return NoChampion(family, f"version {newest.version} was not promoted: {newest.reason}")


@task(
    name="load-champions",
    retries=2,
    retry_delay_seconds=3,
    retry_condition_fn=retry_on_io,
    cache_policy=NO_CACHE,
)
def load_champions() -> dict[str, tracking.Champion | NoChampion]:
    """Each family's `@champion` model from the registry, or why it has none."""
    out: dict[str, tracking.Champion | NoChampion] = {}
    for family in families():
        if tracking.champion_version(family.name) is None:
            out[family.name] = no_champion(family.name)
        else:
            out[family.name] = tracking.load_champion(family.name)
    return out


# Days of features before the first scored day that a baseline learns each cell from.
BASELINE_REFERENCE_DAYS = 7


def scorers_for(
    champions: dict[str, tracking.Champion | NoChampion],
    reference: pl.DataFrame,
    params: ModelParams,
) -> tuple[list[Scorer], dict[str, str]]:
    """Who scores each family: its champion, else its baseline fitted on `reference`, else
    nobody; and one line per family saying which, and why."""
    scorers, lines = [], {}
    for family in families():
        got = champions[family.name]
        if isinstance(got, tracking.Champion):
            scorers.append(champion_scorer(family, got.model, ModelRef(*champion_ref(got))))
            lines[family.name] = f"{got.name} version {got.version} (champion)"
            continue
        try:
            baseline = family.baseline(reference, params)
        except NoDataError as exc:
            lines[family.name] = f"no scores — no champion ({got.why}) and {exc}"
            continue
        scorers.append(baseline_scorer(family, baseline))
        lines[family.name] = (
            f"baseline scores ({baseline.what}, model {baseline.name}) — {got.why}. The "
            "first trained model that beats this baseline takes over (`cellpulse train` "
            "once more days are in)"
        )
    return scorers, lines


def champion_ref(champion: tracking.Champion) -> tuple[str, str, str]:
    return champion.name, champion.version, champion.run_id


@task(name="score-days", retries=2, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def score_days(
    settings: Settings,
    days: list[date],
    champions: dict[str, tracking.Champion | NoChampion],
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Score `days` and write their scores and the expected band a champion draws (if
    one does) into the lake, replacing what was there, chunk by chunk; the score table
    and what scored each family."""
    spec = lake_spec(settings.layout, FeatureParams.of(settings))
    window = DayWindow(days[0], days[-1])
    # A baseline learns each cell from up to a week of the days before those it scores (an
    # outage today must not raise its own cell's spread); a network with no earlier day
    # learns from these.
    reference = pl.DataFrame()
    if any(isinstance(c, NoChampion) for c in champions.values()):
        columns = ["cell_id", "ts", *spec.kpis]
        reference = reference_before(settings, days[0], columns)
        if not reference.height:
            reference = read_features(settings.layout, window, spec, columns)
    params = ModelParams.of(settings)
    scorers, lines = scorers_for(champions, reference, params)
    predict = predictor(settings.score_engine, settings.layout.compiled, settings.train.n_jobs)
    # The ROPs before the first day that the consecutive-ROP rule and the explanation of
    # alerts look back on: a few ROPs, not the day before (the every-ROP run reads as much).
    start = datetime.combine(days[0], time(), tzinfo=UTC)
    keep = context_rops(settings.alerts.consecutive_rops, EXPLAIN_SPAN, settings.rop_minutes)
    context = read_features_since(
        settings.layout, spec, start - timedelta(minutes=settings.rop_minutes * keep), start
    )
    # Chunks of whole cells: a national day's features, and its expected bands, are never
    # in memory whole.
    chunks = feature_chunks(settings.layout, window, spec, SCORE_CHUNK_ROWS)
    scored = scored_chunks(
        chunks, context, scorers, params, datetime.now(UTC), spec.hash(), days, predict
    )
    out = settings.layout
    scores = write_scored(scored, out.scores.days_writer(days), out.expected.days_writer(days))
    return scores, lines


def reference_before(settings: Settings, day: date, columns: list[str]) -> pl.DataFrame:
    """The `columns` of the features a baseline learns from when it scores `day`: the built
    days of the BASELINE_REFERENCE_DAYS before it (as `score_days` reads them)."""
    built = set(settings.layout.features.dates())
    before = [day - timedelta(days=k) for k in range(BASELINE_REFERENCE_DAYS, 0, -1)]
    days = [d for d in before if d in built]
    if not days:
        return pl.DataFrame()
    files = settings.layout.features.files(days[0], days[-1])
    return lake.scan(files).select(columns).collect()


@task(name="score-rops", cache_policy=NO_CACHE)
def score_new_rops(
    settings: Settings,
    spec: FeatureSpec,
    features: pl.DataFrame,
    context: pl.DataFrame,
    champions: dict[str, tracking.Champion | NoChampion],
) -> tuple[pl.DataFrame, pl.DataFrame | None, dict[str, str]]:
    """The score table of new ROPs' `features` (after their `context`), the expected band
    a champion draws for them, and what scored each family: as `score_days` would publish
    them for these rows."""
    reference = pl.DataFrame()
    if any(isinstance(c, NoChampion) for c in champions.values()):
        # What a baseline reads: the KPIs' own columns (not their transforms).
        day = features["ts"].min().date()  # type: ignore[union-attr]
        reference = reference_before(settings, day, ["cell_id", "ts", *spec.kpis])
    params = ModelParams.of(settings)
    scorers, lines = scorers_for(champions, reference if reference.height else features, params)
    predict = predictor(settings.score_engine, settings.layout.compiled, settings.train.n_jobs)
    now = datetime.now(UTC)
    scores = score_rops(context, features, scorers, params, now, spec.hash(), predict)
    bands = [
        band
        for s in scorers
        if s.model is not None and (band := s.family.band(s.model, features, predict)) is not None
    ]
    return scores, (bands[0] if bands else None), lines


@task(
    name="publish-rops",
    retries=3,
    retry_delay_seconds=5,
    retry_condition_fn=retry_on_io,
    cache_policy=NO_CACHE,
)
def publish_rops(
    settings: Settings,
    scores: pl.DataFrame,
    band: pl.DataFrame | None,
    carried: pl.DataFrame | None,
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """New ROPs' scores and bands appended to the lake (a delivery per day), their period
    of the ops store replaced, and the alerts they touch upserted. Returns (the alerts
    touched, those still open with what continues them, the ids of new alerts)."""
    alerts, still_open = advance_alerts(
        carried, scores, settings.alerts.clear_after_rops, settings.rop_minutes
    )
    for ds, table in [(settings.layout.scores, scores), (settings.layout.expected, band)]:
        if table is None:
            continue
        with_day = table.with_columns(pl.col("ts").dt.date().alias("_day"))
        for (day,), rows in with_day.partition_by("_day", as_dict=True, include_key=False).items():
            assert isinstance(day, date)
            ds.append(rows, day)
    start, end = scores["ts"].min(), scores["ts"].max()
    assert isinstance(start, datetime) and isinstance(end, datetime)
    with open_ops_store(settings) as store:
        store.replace_scores(scores, start, end + timedelta(minutes=settings.rop_minutes))
        new = store.upsert_alerts(alerts)
    return alerts, still_open, new


@dataclass(frozen=True)
class RopScores:
    """What an every-ROP run published: the ROPs' scores, the alerts they touched, how many
    alerts are new, the webhook's delivery, and what scored each family."""

    scores: pl.DataFrame
    alerts: pl.DataFrame
    new_alerts: int
    webhook: Delivery | None
    families: dict[str, str]

    @property
    def rops(self) -> int:
        return self.scores["ts"].n_unique()


def next_state(
    state: RopState, features: pl.DataFrame, still_open: pl.DataFrame, rop_minutes: int, keep: int
) -> RopState:
    """The state after `features` were published: the newest ROP, the last `keep` ROPs of
    feature rows as context, the alerts still open."""
    newest = features["ts"].max()
    assert isinstance(newest, datetime)
    rows = pl.concat([state.context.select(features.columns), features], how="vertical_relaxed")
    context = rows.filter(pl.col("ts") > newest - timedelta(minutes=rop_minutes * keep))
    return RopState(newest, state.spec_hash, context, still_open)


@flow(name="score-rops")
def score_rops_flow(
    settings: Settings, spec: FeatureSpec, features: pl.DataFrame, state: RopState
) -> tuple[RopScores, pl.DataFrame]:
    """Score new ROPs' `features` after the context `state` carries and publish them
    everywhere ops reads them; the scores and the alerts still open."""
    tracking.configure(settings)
    champions = load_champions()
    scores, band, lines = score_new_rops(settings, spec, features, state.context, champions)
    alerts, still_open, new = publish_rops(settings, scores, band, state.open_alerts)
    delivery = notify(settings, alerts, new)
    return RopScores(scores, alerts, len(new), delivery, lines), still_open


@flow(name="score-on-dask")
def score_on_dask(
    settings: Settings,
    days: list[date],
    champions: dict[str, tracking.Champion | NoChampion],
) -> tuple[pl.DataFrame, dict[str, str]]:
    """One scoring task per day on the Dask cluster (each reads its day and the one before,
    as the single-process path does, and writes its day), gathered here for alerts and
    publishing."""
    futures = score_days.map(unmapped(settings), [[d] for d in days], unmapped(champions))
    parts = [f.result() for f in futures]
    return pl.concat([p[0] for p in parts]).sort("cell_id", "ts"), parts[-1][1]


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
    """Score `days`, each family with its champion or, until it has one, its baseline, and
    publish the result everywhere ops reads it."""
    if not days:
        raise NoDataError("no days to score; pass --from/--to or ingest new data first")
    tracking.configure(settings)
    champions = load_champions()
    score = (  # one task per day on the Dask cluster, or all days here
        score_on_dask.with_options(task_runner=dask_runner(settings))
        if settings.dask_address
        else score_days
    )
    scores, lines = score(settings, days, champions)
    alerts = derive_alerts(scores, settings.alerts.clear_after_rops, settings.rop_minutes)
    new = publish(settings, scores, alerts, days)
    delivery = notify(settings, alerts, new)
    show_top_cells(settings, scores, alerts)
    summary = ScoreSummary.of(days, scores, alerts, settings, len(new), delivery, lines)
    get_run_logger().info(
        f"score: {len(days)} days ({days[0]} to {days[-1]}), {summary.rows:,} rows, "
        f"{summary.cells} cells, {summary.anomalous_rops} anomalous ROPs, {summary.alerts} "
        f"alerts ({summary.new_alerts} new, {summary.open_alerts} open); scored by "
        + "; ".join(f"{f}: {by}" for f, by in summary.families.items())
    )
    return summary
