"""What the routes share: the types of their parameters and bodies (and so of the OpenAPI
schema), the error answers they document, rows as JSON, and how a route opens the store."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol

import polars as pl
from fastapi import Path as PathParam
from fastapi import Query
from pydantic import AfterValidator, BaseModel, Field

from cellpulse import contract
from cellpulse.api.security import MAX_BODY_BYTES
from cellpulse.opsstore import OpsStore

# An alert id is its cell id, "@" and the minute it opened (publish.derive_alerts), so every
# cell id the contract accepts gives an alert id this rule accepts.
ALERT_ID_PATTERN = (
    contract.CELL_ID_PATTERN.removesuffix("$") + r"@[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}Z$"
)
ALERT_ID_MAX_CHARS = contract.CELL_ID_MAX_CHARS + len("@2026-01-01T00:00Z")
# Times a request may name: four-digit years short of 9999, so that converting to UTC and
# the period arithmetic (a day back) stay inside what a datetime holds. The schema says it
# too (a date-time's pattern), so clients and fuzzers know the bound.
TIME_YEARS = (1000, 9998)
TIME_PATTERN = r"^(?!0|9999)"
STORE_UNAVAILABLE = "the ops store is busy or unreachable; retry shortly"


class StoreOpener(Protocol):
    """Opens the installation's ops store for one request (the routes' I/O resource)."""

    def __call__(self, *, read_only: bool) -> OpsStore: ...


StoreExists = Callable[[], bool]


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


Status = Literal["open", "acknowledged", "closed", "false_alarm"]
Severity = Literal["critical", "major", "minor"]
# Free text, as publish.ALERT_TYPES may grow: an unknown type matches no alert.
AlertType = Annotated[str, Query(max_length=32)]
MAX_BULK = 200  # alerts one bulk action may name (a site's cells, a screen of the queue)


class BulkAction(AlertAction):
    action: Literal["acknowledge", "close", "false_alarm"]
    alert_ids: list[
        Annotated[str, Field(pattern=ALERT_ID_PATTERN, max_length=ALERT_ID_MAX_CHARS)]
    ] = Field(min_length=1, max_length=MAX_BULK, description="The alerts to act on.")


class Problem(BaseModel):
    """Every error answer: one line saying what is wrong and how to fix it."""

    detail: str


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route documents in the OpenAPI schema."""
    meaning = {
        401: "missing or wrong bearer token",
        404: "no such cell or alert",
        409: "the alert's state does not allow this action",
        413: f"request body larger than {MAX_BODY_BYTES // 1024} KiB",
        503: "the ops store is busy or unreachable (retry), or holds no scores yet",
    }
    return {code: {"model": Problem, "description": meaning[code]} for code in codes}


def records(df: pl.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as JSON objects."""
    return [jsonable(r) for r in df.iter_rows(named=True)]


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """NaN is not JSON: send null."""
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
