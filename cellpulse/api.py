"""The HTTP API and web page for network operations (`cellpulse api`).

Read routes answer from the ops store (opened per request, read-only, so scoring runs can
write between requests) and, for a cell's KPIs, from the lake. Every route but /health needs
the bearer token; every query is bounded (page size, period length).
"""

import secrets
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import polars as pl
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from cellpulse import contract, lake
from cellpulse.errors import NoDataError
from cellpulse.features.store import expected_dataset
from cellpulse.opsstore import (
    AlertNotFound,
    OpsStoreUnavailable,
    TransitionRefused,
    open_ops_store,
)
from cellpulse.settings import Settings

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
ID_PATTERN = r"^[A-Za-z0-9_.:@+\-]{1,128}$"  # cell and alert ids; nothing path- or SQL-like


def api_token(settings: Settings) -> str:
    """The configured token, or the installation's own random one (created on first use,
    readable by its owner only)."""
    if settings.api.token is not None:
        return settings.api.token.get_secret_value()
    path = settings.api_token_path
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        lake.atomic_write_bytes(path, secrets.token_urlsafe(32).encode())
        path.chmod(0o600)
    return path.read_text().strip()


class AlertAction(BaseModel):
    by: str = Field(min_length=1, max_length=80, description="Who acts (name or login).")
    comment: str | None = Field(None, max_length=2000)


class Problem(BaseModel):
    """Every error answer: one line saying what is wrong and how to fix it."""

    detail: str


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route documents in the OpenAPI schema."""
    meaning = {
        401: "missing or wrong bearer token",
        404: "no such cell or alert",
        409: "the alert's state does not allow this action",
        503: "the ops store is busy or unreachable (retry), or holds no scores yet",
    }
    return {code: {"model": Problem, "description": meaning[code]} for code in codes}


def create_app(settings: Settings) -> FastAPI:
    token = api_token(settings)
    bearer = HTTPBearer(auto_error=False)
    page = settings.api.max_page

    def authorised(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        given = credentials.credentials if credentials else ""
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(
                401,
                "missing or wrong bearer token; send 'Authorization: Bearer <token>' "
                f"(the token is in {settings.api_token_path} unless api.token is set)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    app = FastAPI(
        title="cellpulse",
        summary="Cells needing attention: anomaly and congestion scores, alerts, models.",
        version="1",
    )
    guarded = [Depends(authorised)]

    @app.exception_handler(NoDataError)
    async def _no_data(_: Request, exc: NoDataError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(OpsStoreUnavailable)
    async def _unavailable(_: Request, exc: OpsStoreUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness, and whether there are scores to serve (no token needed)."""
        if not settings.ops_store_url and not settings.ops_store_path.exists():
            return {"status": "ok", "scores": 0, "latest_ts": None}
        with open_ops_store(settings, read_only=True) as store:
            latest = store.query("SELECT count(*) AS n, max(ts) AS ts FROM scores").row(0)
        return {"status": "ok", "scores": latest[0], "latest_ts": latest[1]}

    @app.get("/api/cells/top", dependencies=guarded, responses=_errors(401, 503))
    def top_cells(
        kind: Literal["anomaly", "congestion"] = "anomaly",
        region: Annotated[str | None, Query(max_length=64)] = None,
        site_id: Annotated[str | None, Query(max_length=64)] = None,
        band: Annotated[str | None, Query(max_length=32)] = None,
        at: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=page)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> dict[str, Any]:
        """Cells ranked by their latest anomaly score or congestion probability, with the
        alert open on each. `at` looks back in time (default: the newest ROP)."""
        with open_ops_store(settings, read_only=True) as store:
            rows, total = store.top_cells(
                kind, limit, offset, region=region, site_id=site_id, band=band, at=_utc(at)
            )
        return {
            "kind": kind,
            "total": total,
            "limit": limit,
            "offset": offset,
            "items": _records(rows),
        }

    @app.get("/api/cells/{cell_id}", dependencies=guarded, responses=_errors(401, 404, 503))
    def cell(
        cell_id: Annotated[str, PathParam(pattern=ID_PATTERN)],
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> dict[str, Any]:
        """One cell's scores and KPIs over [start, end) (default: the last day it was
        scored). The period may not exceed api.max_days."""
        with open_ops_store(settings, read_only=True) as store:
            last = store.query("SELECT max(ts) AS ts FROM scores WHERE cell_id = ?", [cell_id])
            newest = last["ts"][0]
            if newest is None:
                raise HTTPException(404, f"no scores for cell {cell_id}; check the cell id")
            end_ = _utc(end) or newest + timedelta(minutes=settings.rop_minutes)
            start_ = _utc(start) or end_ - timedelta(days=1)
            if start_ >= end_:
                raise HTTPException(422, "start must be before end")
            if end_ - start_ > timedelta(days=settings.api.max_days):
                raise HTTPException(
                    422, f"period longer than {settings.api.max_days} days; ask for less"
                )
            scores = store.cell_scores(cell_id, start_, end_)
        kpis = _cell_kpis(settings, cell_id, start_, end_)
        expected = _cell_rows(expected_dataset(settings), cell_id, start_, end_)
        watched = [c for c in expected.columns if f"{c}_expected" in expected.columns]
        return {
            "cell_id": cell_id,
            "start": start_,
            "end": end_,
            "scores": _records(scores),
            "kpis": _records(kpis),
            "watched_kpis": watched,
            "expected": _records(expected.drop("cell_id", "region", strict=False)),
            "kpi_units": {m.name: m.unit for m in contract.MEASUREMENTS if m.name in CELL_KPIS},
        }

    @app.get("/api/alerts", dependencies=guarded, responses=_errors(401, 503))
    def alerts(
        status: Literal["open", "acknowledged", "closed", "false_alarm"] | None = None,
        region: Annotated[str | None, Query(max_length=64)] = None,
        cell_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
        limit: Annotated[int, Query(ge=1, le=page)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> dict[str, Any]:
        """Alerts, open ones first, then by peak score."""
        with open_ops_store(settings, read_only=True) as store:
            rows, total = store.alerts(limit, offset, status=status, region=region, cell_id=cell_id)
        return {"total": total, "limit": limit, "offset": offset, "items": _records(rows)}

    @app.get("/api/alerts/{alert_id}", dependencies=guarded, responses=_errors(401, 404, 503))
    def alert(alert_id: Annotated[str, PathParam(pattern=ID_PATTERN)]) -> dict[str, Any]:
        """One alert and every action people took on it."""
        with open_ops_store(settings, read_only=True) as store:
            try:
                found = store.alert(alert_id)
            except AlertNotFound:
                raise HTTPException(404, f"no alert {alert_id}") from None
            history = store.alert_history(alert_id)
        return {**_jsonable(found), "history": _records(history)}

    @app.post(
        "/api/alerts/{alert_id}/{action}",
        dependencies=guarded,
        responses=_errors(401, 404, 409, 503),
    )
    def act(
        alert_id: Annotated[str, PathParam(pattern=ID_PATTERN)],
        action: Literal["acknowledge", "close", "false_alarm"],
        body: AlertAction,
    ) -> dict[str, Any]:
        """Acknowledge, close, or mark as false alarm (kept with who, when and why)."""
        with open_ops_store(settings) as store:
            try:
                updated = store.act_on_alert(
                    alert_id, action, body.by, body.comment, datetime.now(UTC)
                )
            except AlertNotFound:
                raise HTTPException(404, f"no alert {alert_id}") from None
            except TransitionRefused as exc:
                raise HTTPException(409, str(exc)) from None
        return _jsonable(updated)

    @app.get("/api/models", dependencies=guarded, responses=_errors(401, 503))
    def models() -> dict[str, Any]:
        """Model versions behind the stored scores, and the period each scored."""
        with open_ops_store(settings, read_only=True) as store:
            return {"items": _records(store.models_in_use())}

    @app.get("/api/feedback/labels", dependencies=guarded, responses=_errors(401, 503))
    def labels() -> dict[str, Any]:
        """People's verdicts on alerts as labels (cell_id, start, end, label): confirmed
        events and false alarms, for the supervised model and the scoreboard."""
        with open_ops_store(settings, read_only=True) as store:
            return {"items": _records(store.feedback_labels())}

    web = resources.files("cellpulse") / "web"

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(Path(str(web / "index.html")))

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: Annotated[str, PathParam(pattern=r"^[a-z]+\.(js|css)$")]) -> FileResponse:
        path = Path(str(web / name))
        if not path.is_file():
            raise HTTPException(404, f"no asset {name}")
        return FileResponse(path)

    return app


def _cell_kpis(settings: Settings, cell_id: str, start: datetime, end: datetime) -> pl.DataFrame:
    rows = _cell_rows(lake.Dataset(settings.lake_dir / "kpi"), cell_id, start, end)
    if rows.is_empty():
        return pl.DataFrame(schema={"ts": pl.Datetime("us", "UTC")})
    # Deliveries of a day may hold a key more than once: the latest wins, as for any reader.
    return lake.latest_rows(rows.select("cell_id", "ts", *CELL_KPIS)).drop("cell_id")


def _cell_rows(ds: lake.Dataset, cell_id: str, start: datetime, end: datetime) -> pl.DataFrame:
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


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _records(df: pl.DataFrame) -> list[dict[str, Any]]:
    return [_jsonable(r) for r in df.iter_rows(named=True)]


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """NaN is not JSON: send null."""
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
