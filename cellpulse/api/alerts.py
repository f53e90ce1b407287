"""Routes on alerts: the list, one alert with its history, and people's actions on it."""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query

from cellpulse import contract
from cellpulse.api.schema import AlertAction, AlertId, StoreOpener, errors, jsonable, records
from cellpulse.opsstore import AlertNotFound, TransitionRefused


def alerts_router(open_store: StoreOpener, max_page: int, guard: list[Any]) -> APIRouter:
    """`/api/alerts`, `/api/alerts/{alert_id}` and its actions.

    Args:
        open_store: opens the ops store per request; actions open it for writing.
        max_page: the most alerts one request may return.
        guard: the dependencies that check the bearer token.
    """
    router = APIRouter(dependencies=guard)

    @router.get("/api/alerts", responses=errors(401, 503))
    def alerts(
        status: Literal["open", "acknowledged", "closed", "false_alarm"] | None = None,
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
            rows, total = store.alerts(limit, offset, status=status, region=region, cell_id=cell_id)
        return {"total": total, "limit": limit, "offset": offset, "items": records(rows)}

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

    return router
