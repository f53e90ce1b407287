"""The HTTP API and web page for network operations (`cellpulse api`).

Read routes answer from the ops store (opened per request, read-only, so scoring runs can
write between requests) and, for a cell's KPIs, from the lake. Every route but the page, its
assets, /health and the OpenAPI schema needs the bearer token; every query is bounded (page
size, period length, body size).

`create_app` assembles routers by resource (`web`, `cells`, `alerts`, `models`), each built
from what it reads (an ops-store opener, the home's layout, a settings slice), and puts the
gate (`security`) in front of them.
"""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from cellpulse.api.alerts import alerts_router
from cellpulse.api.cells import CELL_KPIS, cells_router
from cellpulse.api.models import models_router
from cellpulse.api.schema import ALERT_ID_PATTERN, StoreOpener
from cellpulse.api.security import (
    MAX_BODY_BYTES,
    ApiTokenError,
    Gate,
    api_token,
    bearer_guard,
)
from cellpulse.api.web import health_router, page_router
from cellpulse.errors import NoDataError
from cellpulse.opsstore import OpsStore, OpsStoreUnavailable, open_ops_store
from cellpulse.settings import Settings

__all__ = [
    "ALERT_ID_PATTERN",
    "CELL_KPIS",
    "MAX_BODY_BYTES",
    "ApiTokenError",
    "api_token",
    "create_app",
]


def create_app(settings: Settings) -> FastAPI:
    """The ops API and page for one installation: its routers, behind the token and body
    gate, with store errors answered as 503."""
    token = api_token(settings)
    guard = bearer_guard(token)
    open_store = _store_opener(settings)

    # No interactive docs: FastAPI's pages load Swagger UI and ReDoc from a public CDN and a
    # favicon from the framework's site. The schema itself is served for tools to read.
    app = FastAPI(
        title="cellpulse",
        summary="Cells needing attention: anomaly and congestion scores, alerts, models.",
        version="1",
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(Gate, token=token, max_body=MAX_BODY_BYTES)
    app.add_exception_handler(NoDataError, _no_data)  # type: ignore[arg-type]
    app.add_exception_handler(OpsStoreUnavailable, _unavailable)  # type: ignore[arg-type]

    def store_exists() -> bool:
        return bool(settings.ops_store_url) or settings.layout.ops_store.exists()

    app.include_router(health_router(open_store, store_exists))
    app.include_router(
        cells_router(open_store, settings.layout, settings.api, settings.rop_minutes, guard)
    )
    app.include_router(
        alerts_router(
            open_store,
            settings.api.max_page,
            settings.api.incident_rops,
            settings.rop_minutes,
            guard,
        )
    )
    app.include_router(models_router(open_store, guard))
    app.include_router(page_router())
    return app


def _store_opener(settings: Settings) -> StoreOpener:
    """The installation's ops store (PostgreSQL or the home's DuckDB file), opened anew for
    each request."""

    def open_store(*, read_only: bool) -> OpsStore:
        return open_ops_store(settings, read_only=read_only)

    return open_store


async def _no_data(_: Request, exc: NoDataError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503)


async def _unavailable(_: Request, exc: OpsStoreUnavailable) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})
