"""Routes on cells: the ranking, and one cell's scores, KPIs and expected bands."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import polars as pl
from fastapi import APIRouter, HTTPException, Query

from cellpulse import lake
from cellpulse.api.schema import (
    ALERT_ID_MAX_CHARS,
    ALERT_ID_PATTERN,
    CellId,
    StoreOpener,
    Timestamp,
    errors,
    records,
)
from cellpulse.layout import Layout
from cellpulse.opsstore import AlertNotFound, OpsStore
from cellpulse.opsview import KPI_UNITS, clip_band
from cellpulse.settings import ApiSettings

RANKING_WINDOW = timedelta(hours=24)
ALERT_CONTEXT = timedelta(hours=6)  # shown before and after an alert's span

CELL_KPIS = (
    "prb_util_dl_pct",
    "dl_ue_thp_mbps",
    "rrc_conn_mean",
    "rrc_estab_att",
    "rrc_estab_succ",
    "drb_rel_abnormal",
    "ho_succ",
    "unavail_s",
)


def cells_router(
    open_store: StoreOpener, layout: Layout, api: ApiSettings, rop_minutes: int, guard: list[Any]
) -> APIRouter:
    """`/api/cells/top` and `/api/cells/{cell_id}`.

    Args:
        open_store: opens the ops store per request (scores, alerts).
        layout: where the lake's KPI and expected-band datasets are.
        api: the page size (`max_page`) and the longest period (`max_days`) a request gets.
        rop_minutes: the ROP length, so a cell's default period ends after its newest ROP.
        guard: the dependencies that check the bearer token.
    """
    router = APIRouter(dependencies=guard)

    @router.get("/api/cells/top", responses=errors(401, 503))
    def top_cells(
        kind: Literal["anomaly", "congestion"] = "anomaly",
        region: Annotated[str | None, Query(max_length=64)] = None,
        site_id: Annotated[str | None, Query(max_length=64)] = None,
        band: Annotated[str | None, Query(max_length=32)] = None,
        start: Timestamp | None = None,
        end: Timestamp | None = None,
        at: Timestamp | None = None,
        limit: Annotated[int, Query(ge=1, le=api.max_page)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> dict[str, Any]:
        """Cells ranked over a window of ROPs [start, end): by their worst anomaly score in
        it, or their peak congestion probability, with when it came and the alert open on
        each. Default window: the 24 hours up to the end of the newest ROP; `at` names the
        window's last ROP instead (a look back in time)."""
        window = RankingRequest(kind, region, site_id, band, start, end, at, limit, offset)
        with open_store(read_only=True) as store:
            return ranked_cells(store, window, rop_minutes, api.max_days)

    @router.get("/api/cells/{cell_id}", responses=errors(401, 404, 503))
    def cell(
        cell_id: CellId,
        start: Timestamp | None = None,
        end: Timestamp | None = None,
        alert_id: Annotated[
            str | None, Query(pattern=ALERT_ID_PATTERN, max_length=ALERT_ID_MAX_CHARS)
        ] = None,
    ) -> dict[str, Any]:
        """One cell's scores and KPIs over [start, end), with its alerts in that period.
        Default period: the alert's span (`alert_id`, else the cell's open or acknowledged
        alert) with ALERT_CONTEXT before and after, else the last day it was scored. The
        period may not exceed api.max_days."""
        with open_store(read_only=True) as store:
            newest = newest_scored(store, cell_id)
            focus = focus_alert(store, cell_id, alert_id)
            if start is None and end is None and focus is not None:
                start, end = alert_period(focus, newest, rop_minutes, api.max_days)
            start_, end_ = cell_period(newest, start, end, rop_minutes, api.max_days)
            scores = store.cell_scores(cell_id, start_, end_)
            alerts = store.cell_alerts(cell_id, start_, end_)
        view = cell_view(layout, cell_id, start_, end_, scores)
        return {**view, "alerts": records(alerts), "alert": shown_alert(alerts, alert_id)}

    return router


@dataclass(frozen=True)
class RankingRequest:
    """What a ranking asks for: the score kind, the filters, the window (none: the default
    one) and the page."""

    kind: Literal["anomaly", "congestion"]
    region: str | None
    site_id: str | None
    band: str | None
    start: datetime | None
    end: datetime | None
    at: datetime | None
    limit: int
    offset: int


def ranked_cells(
    store: OpsStore, request: RankingRequest, rop_minutes: int, max_days: int
) -> dict[str, Any]:
    """The answer to a ranking: the window used (`ranking_window`) and one page of cells
    ranked in it; no cells (and the window as asked) while nothing was scored."""
    r = request
    newest = store.newest_ts()
    if newest is None:
        return {
            "kind": r.kind,
            "total": 0,
            "limit": r.limit,
            "offset": r.offset,
            "start": r.start,
            "end": r.end,
            "items": [],
        }
    start, end = ranking_window(newest, r.start, r.end, r.at, rop_minutes, max_days)
    rows, total = store.rank_cells(
        r.kind, start, end, r.limit, r.offset, region=r.region, site_id=r.site_id, band=r.band
    )
    return {
        "kind": r.kind,
        "total": total,
        "limit": r.limit,
        "offset": r.offset,
        "start": start,
        "end": end,
        "items": records(rows),
    }


def newest_scored(store: OpsStore, cell_id: str) -> datetime:
    """The cell's newest scored ROP; 404 if it was never scored."""
    newest: datetime | None = store.query(
        "SELECT max(ts) AS ts FROM scores WHERE cell_id = ?", [cell_id]
    )["ts"][0]
    if newest is None:
        raise HTTPException(404, f"no scores for cell {cell_id}; check the cell id")
    return newest


def focus_alert(store: OpsStore, cell_id: str, alert_id: str | None) -> dict[str, Any] | None:
    """The alert a cell view is about: the one asked for (404 if there is none of that id on
    this cell), else the cell's open or acknowledged alert, else none."""
    focus = store.active_alert(cell_id)
    if alert_id is not None:
        try:
            focus = store.alert(alert_id)
        except AlertNotFound:
            raise HTTPException(404, f"no alert {alert_id}") from None
        if focus["cell_id"] != cell_id:
            raise HTTPException(404, f"alert {alert_id} is not on cell {cell_id}")
    return focus


def cell_period(
    newest: datetime, start: datetime | None, end: datetime | None, rop_minutes: int, max_days: int
) -> tuple[datetime, datetime]:
    """The period [start, end) a cell request covers: by default the day up to the end of
    the cell's newest scored ROP; refused (422) if empty or longer than `max_days`."""
    end_ = end or newest + timedelta(minutes=rop_minutes)
    start_ = start or end_ - timedelta(days=1)
    if start_ >= end_:
        raise HTTPException(422, "start must be before end")
    if end_ - start_ > timedelta(days=max_days):
        raise HTTPException(422, f"period longer than {max_days} days; ask for less")
    return start_, end_


def ranking_window(
    newest: datetime,
    start: datetime | None,
    end: datetime | None,
    at: datetime | None,
    rop_minutes: int,
    max_days: int,
) -> tuple[datetime, datetime]:
    """The window [start, end) a ranking covers: by default RANKING_WINDOW up to the end of
    the newest ROP (or of the ROP `at`). A window longer than `max_days` is cut to its last
    `max_days` (the answer names the window used); one that ends before it starts holds no
    ROP, so no cell."""
    rop = timedelta(minutes=rop_minutes)
    end_ = end or (at or newest) + rop
    start_ = max(start or end_ - RANKING_WINDOW, end_ - timedelta(days=max_days))
    return start_, end_


def alert_period(
    alert: dict[str, Any], newest: datetime, rop_minutes: int, max_days: int
) -> tuple[datetime, datetime]:
    """An alert's span with ALERT_CONTEXT on each side, ending no later than the cell's
    newest ROP and no longer than `max_days` (a long alert shows its newest days)."""
    rop = timedelta(minutes=rop_minutes)
    last = alert.get("last_anomalous_at") or alert["opened_at"]
    over = alert.get("closed_at") or last + rop
    end = min(over + ALERT_CONTEXT, newest + rop)
    start = max(alert["opened_at"] - ALERT_CONTEXT, end - timedelta(days=max_days))
    return start, end


def shown_alert(alerts: pl.DataFrame, alert_id: str | None) -> dict[str, Any] | None:
    """The alert a cell view is about, among the cell's alerts of the period (newest
    first): the one asked for, else an open or acknowledged one, else the newest."""
    if alerts.is_empty():
        return None
    rows = records(alerts)
    for wanted in (
        lambda a: a["alert_id"] == alert_id,
        lambda a: a["status"] in ("open", "acknowledged"),
        lambda a: True,
    ):
        found = next((a for a in rows if wanted(a)), None)
        if found is not None:
            return found
    return None


def cell_view(
    layout: Layout, cell_id: str, start: datetime, end: datetime, scores: pl.DataFrame
) -> dict[str, Any]:
    """A cell's answer: its scores, its KPIs and expected bands from the lake, and units."""
    kpis = cell_kpis(layout.kpi, cell_id, start, end)
    expected = cell_rows(layout.expected, cell_id, start, end)
    watched = [c for c in expected.columns if f"{c}_expected" in expected.columns]
    expected = clip_band(expected, watched)
    shown = [*watched, *(k for k in CELL_KPIS if k not in watched)]
    return {
        "cell_id": cell_id,
        "start": start,
        "end": end,
        "scores": records(scores),
        "kpis": records(kpis),
        "watched_kpis": watched,
        "expected": records(expected.drop("cell_id", "region", strict=False)),
        "kpi_units": {k: KPI_UNITS.get(k, "") for k in shown},
    }


def cell_kpis(kpi: lake.Dataset, cell_id: str, start: datetime, end: datetime) -> pl.DataFrame:
    """One cell's CELL_KPIS in [start, end), one row per ROP."""
    rows = cell_rows(kpi, cell_id, start, end)
    if rows.is_empty():
        return pl.DataFrame(schema={"ts": pl.Datetime("us", "UTC")})
    # Deliveries of a day may hold a key more than once: the latest wins, as for any reader.
    return lake.latest_rows(rows.select("cell_id", "ts", *CELL_KPIS)).drop("cell_id")


def cell_rows(ds: lake.Dataset, cell_id: str, start: datetime, end: datetime) -> pl.DataFrame:
    """One cell's rows of a lake dataset in [start, end), read with a pushed-down filter."""
    files = ds.files(start.date(), end.date())
    if not files:
        return pl.DataFrame(schema={"cell_id": pl.String, "ts": pl.Datetime("us", "UTC")})
    return (
        lake.scan(files)
        .filter((pl.col("cell_id") == cell_id) & pl.col("ts").is_between(start, end, "left"))
        .collect()
        .sort("ts")
    )
