"""The score table of KPI_CONTRACT.md, the alerts derived from it, and the ranked summaries
that ops reads. Pure functions over tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast
from urllib.parse import quote

import polars as pl

from cellpulse import contract
from cellpulse.rops import run_ids

SCORE_COLUMNS = (
    "cell_id",
    "ts",
    *contract.DIMENSIONS,
    "anomaly_score",
    "is_anomaly",
    "anomaly_kpis",
    "congestion_prob",
    "congestion_horizon",
    "anomaly_model",
    "anomaly_model_version",
    "anomaly_run_id",
    "congestion_model",
    "congestion_model_version",
    "congestion_run_id",
    "scored_at",
)


@dataclass(frozen=True)
class ModelRef:
    """Which registered model version (and training run) produced a score."""

    name: str
    version: str
    run_id: str


def assemble_scores(
    keys: pl.DataFrame, families: list[pl.DataFrame], scored_at: datetime
) -> pl.DataFrame:
    """One score row per (cell_id, ts): the keys and dimensions of `keys`, each family's
    columns (value columns and the `<family>_model`, `_model_version`, `_run_id` naming what
    scored them: a registered version, or `baseline:<method>` with version "baseline"), all
    aligned row for row."""
    return (
        pl.concat([keys.select("cell_id", "ts", *contract.DIMENSIONS), *families], how="horizontal")
        .with_columns(scored_at=pl.lit(scored_at).cast(pl.Datetime("us", "UTC")))
        .select(SCORE_COLUMNS)
    )


def group_alerts(flagged: pl.DataFrame, clear_after_rops: int, rop_minutes: int) -> pl.DataFrame:
    """Number the alert each flagged ROP belongs to (`_alert`): a cell's flagged ROPs stay in
    one alert until `clear_after_rops` normal ROPs pass between them. Sorted by cell, ts."""
    alert = run_ids(rop_minutes, max_step=clear_after_rops)
    return flagged.sort("cell_id", "ts").with_columns(alert.alias("_alert"))


def derive_alerts(scores: pl.DataFrame, clear_after_rops: int, rop_minutes: int) -> pl.DataFrame:
    """Alerts from flagged ROPs: one alert per run of anomalous ROPs of a cell, where gaps
    shorter than `clear_after_rops` normal ROPs do not close it. An alert whose last flagged
    ROP is followed by fewer normal ROPs than that (in the data at hand) stays open."""
    alerts, _ = advance_alerts(None, scores, clear_after_rops, rop_minutes)
    return alerts


# What an open alert carries from one every-ROP run to the next besides its published
# columns: the ROP its driving KPIs come from, and the newest ROP its cell was scored at.
CARRIED = ("_peak_at", "_data_end")


def advance_alerts(
    carried: pl.DataFrame | None, scores: pl.DataFrame, clear_after_rops: int, rop_minutes: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The alerts after `scores`, given the alerts still open before them (`carried`, the
    second half of the previous call's answer; None: none); scores of ROPs after those
    `carried` saw. Returns (every alert `scores` or `carried` touch, the published columns;
    the ones still open, with CARRIED, for the next call).

    Deriving a day ROP by ROP and deriving it at once give the same alerts: an open alert
    is carried as one row holding its run's aggregate, which the run's next flagged ROPs
    extend exactly as they would extend the run's rows (`derive_alerts` is this with
    nothing carried)."""
    rop = pl.duration(minutes=rop_minutes)
    flagged = scores.filter(pl.col("is_anomaly")).select(
        "cell_id",
        "site_id",
        "region",
        "ts",
        "anomaly_score",
        "anomaly_kpis",
        "anomaly_model_version",
        pl.col("ts").alias("_opened"),
        pl.col("ts").alias("_peak_at"),
        pl.lit(1, pl.UInt32).alias("_rops"),
    )
    ends = [scores.group_by("cell_id").agg(pl.col("ts").max().alias("_data_end"))]
    if carried is not None and not carried.is_empty():
        flagged = pl.concat(
            [
                carried.select(
                    "cell_id",
                    "site_id",
                    "region",
                    pl.col("last_anomalous_at").alias("ts"),
                    pl.col("peak_score").alias("anomaly_score"),
                    pl.col("kpis").alias("anomaly_kpis"),
                    pl.col("model_version").alias("anomaly_model_version"),
                    pl.col("opened_at").alias("_opened"),
                    "_peak_at",
                    pl.col("anomalous_rops").cast(pl.UInt32).alias("_rops"),
                ),
                flagged,
            ],
            how="vertical_relaxed",
        )
        ends.append(carried.select("cell_id", "_data_end"))
    if flagged.is_empty():
        return _empty_alerts(), _empty_alerts().with_columns(
            pl.lit(None, pl.Datetime("us", "UTC")).alias(c) for c in CARRIED
        )
    data_end = pl.concat(ends).group_by("cell_id").agg(pl.col("_data_end").max())
    # The peak's KPIs: the highest score, the earliest ROP among equal ones, so that the
    # answer does not depend on the order rows arrive in.
    at_peak = [pl.col("anomaly_score"), pl.col("_peak_at")]
    runs = (
        group_alerts(flagged, clear_after_rops, rop_minutes)
        .group_by("_alert", maintain_order=True)
        .agg(
            pl.col("cell_id").first(),
            pl.col("site_id").first(),
            pl.col("region").first(),
            pl.col("_opened").min().alias("opened_at"),
            pl.col("ts").max().alias("last_anomalous_at"),
            pl.col("anomaly_score").max().cast(pl.Float64).alias("peak_score"),
            pl.col("anomaly_kpis").sort_by(at_peak, descending=[True, False]).first().alias("kpis"),
            pl.col("_peak_at").sort_by(at_peak, descending=[True, False]).first(),
            pl.col("anomaly_model_version").last().alias("model_version"),
            pl.col("_rops").sum().cast(pl.UInt32).alias("anomalous_rops"),
        )
        .join(data_end, on="cell_id")
    )
    closes = pl.col("last_anomalous_at") + rop * clear_after_rops
    alerts = runs.select(
        (pl.col("cell_id") + "@" + pl.col("opened_at").dt.strftime("%Y-%m-%dT%H:%MZ")).alias(
            "alert_id"
        ),
        "cell_id",
        "site_id",
        "region",
        "opened_at",
        "last_anomalous_at",
        pl.when(closes <= pl.col("_data_end")).then(closes).alias("closed_at"),
        pl.when(closes <= pl.col("_data_end"))
        .then(pl.lit("closed"))
        .otherwise(pl.lit("open"))
        .alias("status"),
        "peak_score",
        "kpis",
        "anomalous_rops",
        "model_version",
        alert_type(pl.col("kpis")).alias("alert_type"),
        alert_severity(pl.col("kpis"), pl.col("peak_score"), pl.col("anomalous_rops")).alias(
            "severity"
        ),
        *CARRIED,
    )
    still_open = alerts.filter(pl.col("status") == "open")
    return alerts.drop(CARRIED), still_open


# The likely kind of fault, from the KPIs that drive an alert at its peak, first match wins:
# a cell that is down drags traffic and users with it, so availability comes first; a cell
# that carries no traffic while it reports itself available is the classic sleeping cell;
# where availability is not delivered, a cell carrying no traffic at all is `no_traffic`
# (down or asleep: the data cannot tell). Slow service that the cell's load explains is
# congestion, a capacity matter rather than a fault.
ALERT_TYPES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("outage", ("availability_pct",)),
    ("no_traffic", ("no_traffic",)),
    ("frozen_counters", ("frozen_counters",)),
    ("interference", ("ul_interference_dbm",)),
    ("congestion", ("congestion",)),
    ("accessibility", ("rrc_sr_pct",)),
    ("retainability", ("drop_rate_pct",)),
    ("mobility", ("ho_sr_pct",)),
    ("sleeping_cell", ("dl_volume_mbit", "rrc_conn_mean")),
    ("degradation", ("dl_ue_thp_mbps", "cqi_mean", "dl_delay_ms")),
)
CRITICAL_SCORE = 20.0  # robust spreads; or any outage or cell carrying no traffic
MAJOR_SCORE = 10.0
MAJOR_ROPS = 8  # two hours of 15-minute ROPs


def alert_type(kpis: pl.Expr) -> pl.Expr:
    """The first ALERT_TYPES entry whose KPIs drive the alert, or `unclassified`."""
    expr = pl.lit("unclassified")
    for name, markers in reversed(ALERT_TYPES):
        hit = pl.any_horizontal(kpis.list.contains(m) for m in markers)
        expr = pl.when(hit).then(pl.lit(name)).otherwise(expr)
    return expr


def alert_severity(kpis: pl.Expr, peak: pl.Expr, rops: pl.Expr) -> pl.Expr:
    """critical: an outage, a cell carrying no traffic or a peak of CRITICAL_SCORE spreads;
    major: MAJOR_SCORE spreads or MAJOR_ROPS anomalous ROPs; minor otherwise."""
    down = kpis.list.contains("availability_pct") | kpis.list.contains("no_traffic")
    return (
        pl.when(down | (peak >= CRITICAL_SCORE))
        .then(pl.lit("critical"))
        .when((peak >= MAJOR_SCORE) | (rops >= MAJOR_ROPS))
        .then(pl.lit("major"))
        .otherwise(pl.lit("minor"))
    )


def _empty_alerts() -> pl.DataFrame:
    ts = pl.Datetime("us", "UTC")
    return pl.DataFrame(
        schema={
            "alert_id": pl.String,
            "cell_id": pl.String,
            "site_id": pl.String,
            "region": pl.String,
            "opened_at": ts,
            "last_anomalous_at": ts,
            "closed_at": ts,
            "status": pl.String,
            "peak_score": pl.Float64,
            "kpis": pl.List(pl.String),
            "anomalous_rops": pl.UInt32,
            "model_version": pl.String,
            "alert_type": pl.String,
            "severity": pl.String,
        }
    )


def top_anomalous(scores: pl.DataFrame, k: int = 10) -> pl.DataFrame:
    """Cells ranked by their worst score in the period, with when and why (none when no
    anomaly scores were published: the family had neither a champion nor a baseline)."""
    return (
        scores.filter(pl.col("anomaly_score").is_not_null())
        .sort("anomaly_score", descending=True)
        .group_by("cell_id", maintain_order=True)
        .agg(pl.all().first(), pl.col("is_anomaly").sum().alias("anomalous_rops"))
        .head(k)
        .select(
            "cell_id",
            "site_id",
            "region",
            "band",
            pl.col("ts").alias("worst_at"),
            "anomaly_score",
            "anomalous_rops",
            "anomaly_kpis",
        )
    )


def top_congestion(scores: pl.DataFrame, k: int = 10) -> pl.DataFrame:
    """Cells ranked by their highest congestion probability on the newest day scored, with
    when that peak comes: the list to act on before the busy hour (none when no congestion
    scores were published, e.g. without PRB utilisation and a model)."""
    newest_day = scores["ts"].max().date()  # type: ignore[union-attr]
    return (
        scores.filter(
            (pl.col("ts").dt.date() == newest_day) & pl.col("congestion_prob").is_not_null()
        )
        .sort("congestion_prob", descending=True)
        .group_by("cell_id", maintain_order=True)
        .first()
        .head(k)
        .select(
            "cell_id",
            "site_id",
            "region",
            "band",
            pl.col("ts").alias("peak_at"),
            "congestion_prob",
            "congestion_horizon",
        )
    )


def markdown_report(scores: pl.DataFrame, alerts: pl.DataFrame, k: int = 15) -> str:
    """The Prefect artifact of a score run: top cells needing attention."""
    lo, hi = cast(datetime, scores["ts"].min()), cast(datetime, scores["ts"].max())
    lines = [
        f"# cellpulse scores {lo:%Y-%m-%d %H:%M} – {hi:%Y-%m-%d %H:%M} UTC",
        "",
        f"{scores['cell_id'].n_unique()} cells, {scores.height} ROPs scored, "
        f"{alerts.height} alerts ({(alerts['status'] == 'open').sum()} open).",
        "",
        f"Scored by: {scored_by(scores)}.",
        "",
        "## Most anomalous cells",
        "",
        "| cell | site | region | worst at (UTC) | score | anomalous ROPs | driving KPIs |",
        "|---|---|---|---|---:|---:|---|",
    ]
    for r in top_anomalous(scores, k).iter_rows(named=True):
        lines.append(
            f"| {r['cell_id']} | {r['site_id']} | {r['region']} | "
            f"{r['worst_at']:%Y-%m-%d %H:%M} | {r['anomaly_score']:.1f} | "
            f"{r['anomalous_rops']} | {', '.join(r['anomaly_kpis'] or [])} |"
        )
    lines += [
        "",
        "## Congestion risk on the newest day",
        "",
        "| cell | site | region | peak at (UTC) | P(congested) | horizon |",
        "|---|---|---|---|---:|---|",
    ]
    for r in top_congestion(scores, k).iter_rows(named=True):
        lines.append(
            f"| {r['cell_id']} | {r['site_id']} | {r['region']} | "
            f"{r['peak_at']:%Y-%m-%d %H:%M} | {r['congestion_prob']:.2f} | "
            f"{r['congestion_horizon']} |"
        )
    return "\n".join(lines) + "\n"


def scored_by(scores: pl.DataFrame) -> str:
    """Which model scored each family's columns, baselines marked: one phrase for reports."""
    parts = []
    for family in ("anomaly", "congestion"):
        models = scores.select(f"{family}_model", f"{family}_model_version").unique().drop_nulls()
        if models.is_empty():
            parts.append(f"{family} not scored")
            continue
        for name, version in models.sort(f"{family}_model").iter_rows():
            label = f"{name} (no champion yet)" if version == "baseline" else f"{name} v{version}"
            parts.append(f"{family} {label}")
    return "; ".join(parts)


def cell_link(page_url: str, cell_id: str) -> str:
    """A link that opens the cell on the ops page. The id is percent-encoded: a cell id may
    hold spaces, '#' or '(' (contract.CELL_ID_RULE), which would break a bare link."""
    return f"{page_url.rstrip('/')}/#cell={quote(cell_id, safe='')}"


def top_cells_table(
    scores: pl.DataFrame, alerts: pl.DataFrame, page_url: str, k: int = 20
) -> list[dict[str, object]]:
    """The table artifact: the worst cells at the newest ROP, each linked to its ops page."""
    newest = scores.filter(pl.col("ts") == pl.col("ts").max())
    open_alerts = alerts.filter(pl.col("status") == "open").select("cell_id", "alert_id")
    ranked = (
        newest.join(open_alerts.unique("cell_id"), on="cell_id", how="left")
        .sort("anomaly_score", descending=True, nulls_last=True)
        .head(k)
    )
    return [
        {
            "cell": f"[{r['cell_id']}]({cell_link(page_url, r['cell_id'])})",
            "region": r["region"],
            "anomaly_score": round(r["anomaly_score"], 2)
            if r["anomaly_score"] is not None
            else None,
            "driving_kpis": ", ".join(r["anomaly_kpis"] or []),
            "congestion_prob": _rounded(r["congestion_prob"], 3),
            "open_alert": r["alert_id"] or "",
        }
        for r in ranked.iter_rows(named=True)
    ]


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None or value != value else round(value, digits)


def verdicts_as_events(verdicts: pl.DataFrame) -> pl.DataFrame:
    """People's verdicts (the ops store's feedback labels) in the labelled-events shape the
    scoreboard and training read: confirmed alerts are faults of type `operator_confirmed`;
    false alarms keep kind `false_alarm`, which no event filter selects."""
    ts = pl.Datetime("us", "UTC")
    if verdicts.is_empty():
        return pl.DataFrame(
            schema={
                "cell_id": pl.String,
                "start": ts,
                "end": ts,
                "type": pl.String,
                "kind": pl.String,
                "decided_by": pl.String,
                "comment": pl.String,
            }
        )
    confirmed = pl.col("label") == "confirmed"
    return verdicts.select(
        "cell_id",
        pl.col("start").cast(ts),
        pl.col("end").cast(ts),
        pl.when(confirmed)
        .then(pl.lit("operator_confirmed"))
        .otherwise(pl.lit("false_alarm"))
        .alias("type"),
        pl.when(confirmed).then(pl.lit("fault")).otherwise(pl.lit("false_alarm")).alias("kind"),
        pl.col("decided_by").cast(pl.String),
        pl.col("comment").cast(pl.String),
    )
