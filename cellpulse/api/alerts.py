"""Routes on alerts: the list, one alert with its history, and people's actions on it."""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import polars as pl
from fastapi import APIRouter, HTTPException, Query

from cellpulse import contract
from cellpulse.api.schema import (
    AlertAction,
    AlertId,
    AlertType,
    BulkAction,
    Severity,
    Status,
    StoreOpener,
    errors,
    jsonable,
    records,
)
from cellpulse.opsstore import AlertNotFound, TransitionRefused
from cellpulse.opsview import group_incidents, summarise_incidents

QUEUE_CAP = 5000  # alerts one queue request groups; more are counted as truncated


def alerts_router(
    open_store: StoreOpener,
    max_page: int,
    incident_rops: int,
    rop_minutes: int,
    guard: list[Any],
) -> APIRouter:
    """`/api/alerts`, `/api/alerts/{alert_id}` and its actions, actions on several alerts,
    and `/api/incidents` (the queue).

    Args:
        open_store: opens the ops store per request; actions open it for writing.
        max_page: the most alerts (or incidents) one request may return.
        incident_rops: co-sited alerts opening within this many ROPs are one incident.
        rop_minutes: the ROP length.
        guard: the dependencies that check the bearer token.
    """
    router = APIRouter(dependencies=guard)
    _add_list_routes(router, open_store, max_page, incident_rops, rop_minutes)
    _add_action_routes(router, open_store)
    return router


def _add_list_routes(
    router: APIRouter,
    open_store: StoreOpener,
    max_page: int,
    incident_rops: int,
    rop_minutes: int,
) -> None:
    """`/api/alerts` (the list) and `/api/incidents` (the queue) on `router`."""

    @router.get("/api/alerts", responses=errors(401, 503))
    def alerts(
        status: Status | None = None,
        severity: Severity | None = None,
        alert_type: AlertType | None = None,
        region: Annotated[str | None, Query(max_length=64)] = None,
        cell_id: Annotated[
            str | None,
            Query(pattern=contract.CELL_ID_PATTERN, max_length=contract.CELL_ID_MAX_CHARS),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=max_page)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> dict[str, Any]:
        """Alerts, open ones first, then by peak score."""
        with open_store(read_only=True) as store:
            rows, total = store.alerts(
                limit,
                offset,
                status=status,
                region=region,
                cell_id=cell_id,
                severity=severity,
                alert_type=alert_type,
            )
        return {"total": total, "limit": limit, "offset": offset, "items": records(rows)}

    @router.get("/api/incidents", responses=errors(401, 503))
    def incidents(
        status: Annotated[list[Status] | None, Query(max_length=4)] = None,
        severity: Severity | None = None,
        region: Annotated[str | None, Query(max_length=64)] = None,
        alert_type: AlertType | None = None,
        limit: Annotated[int, Query(ge=1, le=max_page)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> dict[str, Any]:
        """The alert queue: alerts (default: open and acknowledged) grouped into incidents,
        the alerts of co-sited cells opening within api.incident_rops ROPs of each other
        being one, most severe first, then oldest first; each with its cells and alerts."""
        statuses = status or ["open", "acknowledged"]
        with open_store(read_only=True) as store:
            rows = store.queue_alerts(
                statuses, QUEUE_CAP, region=region, severity=severity, alert_type=alert_type
            )
        return incident_page(rows, incident_rops, rop_minutes, limit, offset)


def incident_page(
    rows: pl.DataFrame, incident_rops: int, rop_minutes: int, limit: int, offset: int
) -> dict[str, Any]:
    """One page of the alert queue: the queued alerts grouped into incidents, each with its
    alerts, and how many alerts there were (`truncated` when the queue hit QUEUE_CAP).

    Args:
        rows: the queued alerts, as `OpsStore.queue_alerts` returns them.
        incident_rops: co-sited alerts opening within this many ROPs are one incident.
        rop_minutes: the ROP length.
        limit: the most incidents on the page.
        offset: the incidents before the page.
    """
    grouped = group_incidents(rows, incident_rops, rop_minutes)
    found = summarise_incidents(grouped)
    alerts_of = (
        {
            incident: records(part.drop("incident_id"))
            for (incident,), part in grouped.group_by("incident_id")
        }
        if not grouped.is_empty()
        else {}
    )
    page = found[offset : offset + limit]
    return {
        "total": len(found),
        "alerts": grouped.height,
        "truncated": grouped.height >= QUEUE_CAP,
        "limit": limit,
        "offset": offset,
        "items": [{**i, "alerts": alerts_of[i["incident_id"]]} for i in page],
    }


def _add_action_routes(router: APIRouter, open_store: StoreOpener) -> None:
    """One alert with its history, and people's actions on one alert or several, on
    `router`."""

    @router.post("/api/alerts/actions", responses=errors(401, 413, 503))
    def act_on_several(body: BulkAction) -> dict[str, Any]:
        """One action on several alerts at once (a selection in the queue, an incident's
        alerts); each alert gets its own result, so one refused leaves the others done."""
        with open_store(read_only=False) as store:
            results = store.act_on_alerts(
                body.alert_ids, body.action, body.by, body.comment, datetime.now(UTC)
            )
        return {"done": sum(1 for r in results if r["ok"]), "results": results}

    @router.get("/api/alerts/{alert_id}", responses=errors(401, 404, 503))
    def alert(alert_id: AlertId) -> dict[str, Any]:
        """One alert and every action people took on it."""
        with open_store(read_only=True) as store:
            try:
                found = store.alert(alert_id)
            except AlertNotFound:
                raise HTTPException(404, f"no alert {alert_id}") from None
            history = store.alert_history(alert_id)
        return {**jsonable(found), "history": records(history)}

    @router.post("/api/alerts/{alert_id}/{action}", responses=errors(401, 404, 409, 413, 503))
    def act(
        alert_id: AlertId,
        action: Literal["acknowledge", "close", "false_alarm"],
        body: AlertAction,
    ) -> dict[str, Any]:
        """Acknowledge, close, or mark as false alarm (kept with who, when and why)."""
        with open_store(read_only=False) as store:
            try:
                updated = store.act_on_alert(
                    alert_id, action, body.by, body.comment, datetime.now(UTC)
                )
            except AlertNotFound:
                raise HTTPException(404, f"no alert {alert_id}") from None
            except TransitionRefused as exc:
                raise HTTPException(409, str(exc)) from None
        return jsonable(updated)
