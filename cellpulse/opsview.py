"""What the ops page shows beyond the stored rows, as plain functions: alerts grouped into
incidents (a site outage is one thing to fix, not one row per cell), and expected bands held
within what a KPI can physically be."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import polars as pl

from cellpulse import contract

SEVERITY_RANK = {"critical": 0, "major": 1, "minor": 2}
STATUS_RANK = {"open": 0, "acknowledged": 1, "closed": 2, "false_alarm": 3}

# Derived KPIs are percentages (ratios of summed counters, availability): 0 to 100.
KPI_LIMITS: dict[str, tuple[float | None, float | None]] = {
    **{m.name: (m.low, m.high) for m in contract.MEASUREMENTS},
    **{k: (0.0, 100.0) for k in contract.DERIVED_KPIS},
}
KPI_UNITS: dict[str, str] = {
    **{m.name: m.unit for m in contract.MEASUREMENTS},
    **{k: "%" for k in contract.DERIVED_KPIS},
}


def clip_band(expected: pl.DataFrame, kpis: list[str]) -> pl.DataFrame:
    """The expected value and band of each of `kpis` (`<kpi>_expected`, `_low`, `_high`)
    clipped to the KPI's contract limits: a band of one spread around an expected volume
    near zero reaches below zero, and one around 99.9 % availability above 100, neither of
    which a cell can show. The KPI's own values are left as measured."""
    clipped: list[pl.Expr] = []
    for kpi in kpis:
        low, high = KPI_LIMITS.get(kpi, (None, None))
        if low is None and high is None:
            continue
        for suffix in ("_expected", "_low", "_high"):
            name = kpi + suffix
            if name in expected.columns:
                clipped.append(pl.col(name).clip(low, high))
    return expected.with_columns(clipped) if clipped else expected


def group_incidents(alerts: pl.DataFrame, within_rops: int, rop_minutes: int) -> pl.DataFrame:
    """`alerts` with an `incident_id`: alerts of cells on the same site that open within
    `within_rops` ROPs of the incident's first alert are one incident (a site losing power
    or backhaul raises an alert on every sector and band at once). The incident's id is its
    first alert's id; an alert without a site is an incident of its own."""
    if alerts.is_empty():
        return alerts.with_columns(pl.lit(None, pl.String).alias("incident_id"))
    reach = timedelta(minutes=within_rops * rop_minutes)
    ordered = alerts.sort("site_id", "opened_at", "alert_id", nulls_last=True)
    ids: list[str] = []
    first: tuple[str, datetime, str] | None = None  # (site, opened_at, alert_id) of the incident
    for site, opened, alert_id in ordered.select("site_id", "opened_at", "alert_id").iter_rows():
        joins = (
            site is not None
            and first is not None
            and first[0] == site
            and opened - first[1] <= reach
        )
        if not joins:
            first = (site, opened, alert_id)
        assert first is not None
        ids.append(first[2] if site is not None else alert_id)
    return ordered.with_columns(pl.Series("incident_id", ids, pl.String))


def summarise_incidents(grouped: pl.DataFrame) -> list[dict[str, Any]]:
    """One entry per incident of `group_incidents`' output, most severe first, then oldest
    first (the queue's order): its site, cells, worst severity and the type of its worst
    alert, its most urgent status, when it opened, its peak score and its alerts' ids."""
    incidents: list[dict[str, Any]] = []
    for (incident_id,), rows in grouped.group_by("incident_id", maintain_order=True):
        ranked = rows.with_columns(
            pl.col("severity").replace_strict(SEVERITY_RANK, default=9).alias("_sev"),
            pl.col("status").replace_strict(STATUS_RANK, default=9).alias("_status"),
        ).sort("_sev", pl.col("peak_score").fill_null(float("-inf")), descending=[False, True])
        worst = ranked.row(0, named=True)
        incidents.append(
            {
                "incident_id": incident_id,
                "site_id": worst["site_id"],
                "region": worst["region"],
                "severity": worst["severity"],
                "alert_type": worst["alert_type"],
                "status": ranked.sort("_status")["status"][0],
                "opened_at": rows["opened_at"].min(),
                "last_anomalous_at": rows["last_anomalous_at"].max(),
                "peak_score": rows["peak_score"].max(),
                "cells": sorted(rows["cell_id"].unique().to_list()),
                "alert_ids": rows.sort("cell_id")["alert_id"].to_list(),
            }
        )
    incidents.sort(key=lambda i: (SEVERITY_RANK.get(i["severity"], 9), i["opened_at"]))
    return incidents
