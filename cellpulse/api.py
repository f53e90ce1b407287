"""The HTTP API and web page for network operations (`cellpulse api`).

Read routes answer from the ops store (opened per request, read-only, so scoring runs can
write between requests) and, for a cell's KPIs, from the lake. Every route but the page, its
assets, /health and the OpenAPI schema needs the bearer token; every query is bounded (page
size, period length, body size).
"""

import logging
import os
import re
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
from pydantic import AfterValidator, BaseModel, Field
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cellpulse import contract, lake
from cellpulse.errors import CellpulseError, NoDataError
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
# An alert id is its cell id, "@" and the minute it opened (publish.derive_alerts), so every
# cell id the contract accepts gives an alert id this rule accepts.
ALERT_ID_PATTERN = (
    contract.CELL_ID_PATTERN.removesuffix("$") + r"@[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}Z$"
)
ALERT_ID_MAX_CHARS = contract.CELL_ID_MAX_CHARS + len("@2026-01-01T00:00Z")
TOKEN_MIN_CHARS = 32
# One word of visible ASCII: what an Authorization header can carry after "Bearer ".
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")
MAX_BODY_BYTES = 64 * 1024  # the largest body a route takes (an alert action) is ~2 KB
# What a browser opens without a token: the page and its assets, liveness, the schema.
PUBLIC_PATHS = frozenset({"/", "/health", "/openapi.json"})
PUBLIC_PREFIXES = ("/static/",)
# Times a request may name: four-digit years short of 9999, so that converting to UTC and
# the period arithmetic (a day back) stay inside what a datetime holds. The schema says it
# too (a date-time's pattern), so clients and fuzzers know the bound.
TIME_YEARS = (1000, 9998)
TIME_PATTERN = r"^(?!0|9999)"
UNAUTHORISED = (
    "missing or wrong bearer token; send 'Authorization: Bearer <token>' "
    "(see `cellpulse api --help` for where the token is)"
)
STORE_UNAVAILABLE = "the ops store is busy or unreachable; retry shortly"

log = logging.getLogger(__name__)


class ApiTokenError(CellpulseError):
    """The API's bearer token is empty, too short, or kept in a file others can read."""


def api_token(settings: Settings) -> str:
    """The configured token, or the installation's own random one (created on first use,
    readable by its owner only). A token anyone could guess is refused: an empty one would
    let a request without Authorization through."""
    if settings.api.token is not None:
        return _checked_token(
            settings.api.token.get_secret_value(),
            "api.token (CELLPULSE_API__TOKEN)",
            'set it to a longer one, e.g. the output of `python -c "import secrets; '
            'print(secrets.token_urlsafe(32))"`, or unset it to use the token cellpulse keeps '
            f"in {settings.layout.api_token}",
        )
    path = settings.layout.api_token
    if not path.exists():
        _create_token_file(path)
    if not path.is_file():  # a directory, or a link to nothing, in the token's place
        raise ApiTokenError(f"{path} is not a file; delete it to have a new token made")
    mode = path.stat().st_mode & 0o777
    if os.name == "posix" and mode & 0o077:
        raise ApiTokenError(
            f"{path} can be read by other users (mode {mode:o}); run `chmod 600 {path}`"
        )
    return _checked_token(
        path.read_text(errors="replace"),
        str(path),
        f"delete {path} to have a new one made, or write a token of at least "
        f"{TOKEN_MIN_CHARS} characters into it",
    )


def _create_token_file(path: Path) -> None:
    """A new random token in a file that is owner-only from its first byte: created with
    mode 0600 and O_EXCL (never written wider and narrowed afterwards, never through a link
    planted there), whatever the umask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return  # another process starting at the same moment made it: theirs is the token
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_urlsafe(32).encode())
        fh.flush()
        os.fsync(fh.fileno())


def _checked_token(token: str, source: str, fix: str) -> str:
    token = token.strip()
    if len(token) < TOKEN_MIN_CHARS or not _TOKEN_CHARS.fullmatch(token):
        what = "empty" if not token else f"{len(token)} characters"
        if token and not _TOKEN_CHARS.fullmatch(token):
            what += " with spaces or characters a header cannot carry"
        raise ApiTokenError(
            f"{source}: the API token is {what}; it must be at least {TOKEN_MIN_CHARS} "
            f"visible ASCII characters without spaces; {fix}"
        )
    return token


def _token_matches(given: str, token: str) -> bool:
    return secrets.compare_digest(given.encode(), token.encode())


class _Gate:
    """What can be decided before a request's body is read: the bearer token of every
    non-public route, and the body's size (declared or streamed). FastAPI reads and parses a
    body before it runs a route's dependencies, so without this gate a client with no token
    could make the API hold any amount of memory."""

    def __init__(self, app: ASGIApp, token: str, max_body: int) -> None:
        self.app, self.token, self.max_body = app, token, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path = scope["path"]
        if path not in PUBLIC_PATHS and not path.startswith(PUBLIC_PREFIXES):
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not _token_matches(given.strip(), self.token):
                answer = JSONResponse(
                    {"detail": UNAUTHORISED}, 401, headers={"WWW-Authenticate": "Bearer"}
                )
                await answer(scope, receive, send)
                return
        declared = headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > self.max_body:
            await self._too_large(scope, receive, send)
            return
        # Read the (small) body here, counting, so a chunked body without Content-Length
        # is bounded too; the app then reads it from memory.
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await self._too_large(scope, receive, send)
                return
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"request body larger than {self.max_body // 1024} KiB; send less"
        await JSONResponse({"detail": detail}, 413, headers={"Connection": "close"})(
            scope, receive, send
        )


def _utc_in_range(ts: datetime) -> datetime:
    """A time as UTC (a time without offset is UTC), refused outside TIME_YEARS."""
    if not TIME_YEARS[0] <= ts.year <= TIME_YEARS[1]:
        raise ValueError(
            f"{ts.isoformat()} is out of range; give a time in the years {TIME_YEARS[0]} to "
            f"{TIME_YEARS[1]}"
        )
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


Timestamp = Annotated[
    datetime,
    AfterValidator(_utc_in_range),
    Field(json_schema_extra={"pattern": TIME_PATTERN}),
]
CellId = Annotated[
    str, PathParam(pattern=contract.CELL_ID_PATTERN, max_length=contract.CELL_ID_MAX_CHARS)
]
AlertId = Annotated[str, PathParam(pattern=ALERT_ID_PATTERN, max_length=ALERT_ID_MAX_CHARS)]


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
        413: f"request body larger than {MAX_BODY_BYTES // 1024} KiB",
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
        # The gate has checked already; this dependency puts the bearer scheme in the schema.
        given = credentials.credentials if credentials else ""
        if not _token_matches(given, token):
            raise HTTPException(401, UNAUTHORISED, headers={"WWW-Authenticate": "Bearer"})

    # No interactive docs: FastAPI's pages load Swagger UI and ReDoc from a public CDN and a
    # favicon from the framework's site. The schema itself is served for tools to read.
    app = FastAPI(
        title="cellpulse",
        summary="Cells needing attention: anomaly and congestion scores, alerts, models.",
        version="1",
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(_Gate, token=token, max_body=MAX_BODY_BYTES)
    guarded = [Depends(authorised)]

    @app.exception_handler(NoDataError)
    async def _no_data(_: Request, exc: NoDataError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(OpsStoreUnavailable)
    async def _unavailable(_: Request, exc: OpsStoreUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.get("/health", responses=_errors(503))
    def health() -> dict[str, Any]:
        """Liveness, and whether there are scores to serve (no token needed)."""
        if not settings.ops_store_url and not settings.layout.ops_store.exists():
            return {"status": "ok", "scores": 0, "latest_ts": None}
        try:
            with open_ops_store(settings, read_only=True) as store:
                latest = store.query("SELECT count(*) AS n, max(ts) AS ts FROM scores").row(0)
        except (OpsStoreUnavailable, NoDataError) as exc:
            # Anyone may ask: the reason (the store's path or URL, the lock holder's program
            # and PID) goes to the log, not to the caller.
            log.warning("health: %s", exc)
            raise HTTPException(503, STORE_UNAVAILABLE, headers={"Retry-After": "5"}) from None
        return {"status": "ok", "scores": latest[0], "latest_ts": latest[1]}

    @app.get("/api/cells/top", dependencies=guarded, responses=_errors(401, 503))
    def top_cells(
        kind: Literal["anomaly", "congestion"] = "anomaly",
        region: Annotated[str | None, Query(max_length=64)] = None,
        site_id: Annotated[str | None, Query(max_length=64)] = None,
        band: Annotated[str | None, Query(max_length=32)] = None,
        at: Timestamp | None = None,
        limit: Annotated[int, Query(ge=1, le=page)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> dict[str, Any]:
        """Cells ranked by their latest anomaly score or congestion probability, with the
        alert open on each. `at` looks back in time (default: the newest ROP)."""
        with open_ops_store(settings, read_only=True) as store:
            rows, total = store.top_cells(
                kind, limit, offset, region=region, site_id=site_id, band=band, at=at
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
        cell_id: CellId,
        start: Timestamp | None = None,
        end: Timestamp | None = None,
    ) -> dict[str, Any]:
        """One cell's scores and KPIs over [start, end) (default: the last day it was
        scored). The period may not exceed api.max_days."""
        with open_ops_store(settings, read_only=True) as store:
            last = store.query("SELECT max(ts) AS ts FROM scores WHERE cell_id = ?", [cell_id])
            newest = last["ts"][0]
            if newest is None:
                raise HTTPException(404, f"no scores for cell {cell_id}; check the cell id")
            end_ = end or newest + timedelta(minutes=settings.rop_minutes)
            start_ = start or end_ - timedelta(days=1)
            if start_ >= end_:
                raise HTTPException(422, "start must be before end")
            if end_ - start_ > timedelta(days=settings.api.max_days):
                raise HTTPException(
                    422, f"period longer than {settings.api.max_days} days; ask for less"
                )
            scores = store.cell_scores(cell_id, start_, end_)
        kpis = _cell_kpis(settings, cell_id, start_, end_)
        expected = _cell_rows(settings.layout.expected, cell_id, start_, end_)
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
        cell_id: Annotated[
            str | None,
            Query(pattern=contract.CELL_ID_PATTERN, max_length=contract.CELL_ID_MAX_CHARS),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=page)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> dict[str, Any]:
        """Alerts, open ones first, then by peak score."""
        with open_ops_store(settings, read_only=True) as store:
            rows, total = store.alerts(limit, offset, status=status, region=region, cell_id=cell_id)
        return {"total": total, "limit": limit, "offset": offset, "items": _records(rows)}

    @app.get("/api/alerts/{alert_id}", dependencies=guarded, responses=_errors(401, 404, 503))
    def alert(alert_id: AlertId) -> dict[str, Any]:
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
        responses=_errors(401, 404, 409, 413, 503),
    )
    def act(
        alert_id: AlertId,
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
    rows = _cell_rows(settings.layout.kpi, cell_id, start, end)
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


def _records(df: pl.DataFrame) -> list[dict[str, Any]]:
    return [_jsonable(r) for r in df.iter_rows(named=True)]


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """NaN is not JSON: send null."""
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
