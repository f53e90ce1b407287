"""Routes on cells: the ranking, and one cell's scores, KPIs and expected bands."""

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import polars as pl
from fastapi import APIRouter, HTTPException, Query

from cellpulse import contract, lake
from cellpulse.api.schema import CellId, StoreOpener, Timestamp, errors, records
from cellpulse.layout import Layout
from cellpulse.settings import ApiSettings

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
        at: Timestamp | None = None,
        limit: Annotated[int, Query(ge=1, le=api.max_page)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> dict[str, Any]:
        """Cells ranked by their latest anomaly score or congestion probability, with the
        alert open on each. `at` looks back in time (default: the newest ROP)."""
        with open_store(read_only=True) as store:
            rows, total = store.top_cells(
                kind, limit, offset, region=region, site_id=site_id, band=band, at=at
            )
        return {
            "kind": kind,
            "total": total,
            "limit": limit,
            "offset": offset,
            "items": records(rows),
        }

    @router.get("/api/cells/{cell_id}", responses=errors(401, 404, 503))
    def cell(
        cell_id: CellId,
        start: Timestamp | None = None,
        end: Timestamp | None = None,
    ) -> dict[str, Any]:
        """One cell's scores and KPIs over [start, end) (default: the last day it was
        scored). The period may not exceed api.max_days."""
        with open_store(read_only=True) as store:
            last = store.query("SELECT max(ts) AS ts FROM scores WHERE cell_id = ?", [cell_id])
            newest = last["ts"][0]
            if newest is None:
                raise HTTPException(404, f"no scores for cell {cell_id}; check the cell id")
            start_, end_ = cell_period(newest, start, end, rop_minutes, api.max_days)
            scores = store.cell_scores(cell_id, start_, end_)
        return cell_view(layout, cell_id, start_, end_, scores)

    return router


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


def cell_view(
    layout: Layout, cell_id: str, start: datetime, end: datetime, scores: pl.DataFrame
) -> dict[str, Any]:
    """A cell's answer: its scores, its KPIs and expected bands from the lake, and units."""
    kpis = cell_kpis(layout.kpi, cell_id, start, end)
    expected = cell_rows(layout.expected, cell_id, start, end)
    watched = [c for c in expected.columns if f"{c}_expected" in expected.columns]
    return {
        "cell_id": cell_id,
        "start": start,
        "end": end,
        "scores": records(scores),
        "kpis": records(kpis),
        "watched_kpis": watched,
        "expected": records(expected.drop("cell_id", "region", strict=False)),
        "kpi_units": {m.name: m.unit for m in contract.MEASUREMENTS if m.name in CELL_KPIS},
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
