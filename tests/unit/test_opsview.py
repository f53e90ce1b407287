"""Incidents from alerts, and expected bands within physical limits: the pure parts of the
ops page's answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from cellpulse.opsview import KPI_UNITS, clip_band, group_incidents, summarise_incidents

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)


def alert(cell: str, site: str | None, minutes: int, severity: str = "major", **extra):
    opened = T0 + timedelta(minutes=minutes)
    return {
        "alert_id": f"{cell}@{opened:%Y-%m-%dT%H:%MZ}",
        "cell_id": cell,
        "site_id": site,
        "region": "north",
        "opened_at": opened,
        "last_anomalous_at": opened + timedelta(hours=1),
        "status": extra.get("status", "open"),
        "peak_score": extra.get("peak", 12.0),
        "alert_type": extra.get("alert_type", "degradation"),
        "severity": severity,
    }


def test_co_sited_alerts_opening_together_are_one_incident():
    alerts = pl.DataFrame(
        [
            alert("S1-1", "S1", 0, "critical", alert_type="outage", peak=40.0),
            alert("S1-2", "S1", 15, "critical", alert_type="outage", status="acknowledged"),
            alert("S1-3", "S1", 30, "major"),  # two ROPs after the first: still together
            alert("S1-4", "S1", 45, "minor"),  # three ROPs: a separate event on the site
            alert("S2-1", "S2", 0, "minor"),  # same time, other site
            alert("X-1", None, 0, "minor"),
            alert("X-2", None, 0, "minor"),  # no site: never grouped
        ]
    )
    grouped = group_incidents(alerts, within_rops=2, rop_minutes=15)
    by_alert = dict(grouped.select("alert_id", "incident_id").iter_rows())
    first = "S1-1@2026-01-05T09:00Z"
    assert [
        by_alert[f"S1-{i}@2026-01-05T09:{m}Z"] for i, m in ((1, "00"), (2, "15"), (3, "30"))
    ] == [first] * 3
    assert by_alert["S1-4@2026-01-05T09:45Z"] == "S1-4@2026-01-05T09:45Z"
    assert grouped["incident_id"].n_unique() == 5

    incidents = summarise_incidents(grouped)
    site = incidents[0]
    assert site["incident_id"] == first
    assert site["cells"] == ["S1-1", "S1-2", "S1-3"]
    assert (site["severity"], site["alert_type"], site["status"]) == ("critical", "outage", "open")
    assert site["peak_score"] == 40.0 and site["opened_at"] == T0
    # Most severe first, then oldest first.
    assert [i["severity"] for i in incidents] == ["critical", "minor", "minor", "minor", "minor"]
    assert incidents[-1]["cells"] == ["S1-4"]


def test_no_alerts_no_incidents():
    empty = pl.DataFrame(
        schema={"alert_id": pl.String, "site_id": pl.String, "opened_at": pl.Datetime("us", "UTC")}
    )
    assert summarise_incidents(group_incidents(empty, 2, 15)) == []


def test_expected_bands_stay_within_physical_limits():
    expected = pl.DataFrame(
        {
            "availability_pct": [100.0],
            "availability_pct_expected": [100.4],
            "availability_pct_low": [98.0],
            "availability_pct_high": [102.5],
            "dl_volume_mbit": [3.0],
            "dl_volume_mbit_expected": [4.0],
            "dl_volume_mbit_low": [-20.0],
            "dl_volume_mbit_high": [28.0],
            "ul_interference_dbm": [-108.0],
            "ul_interference_dbm_expected": [-109.0],
            "ul_interference_dbm_low": [-111.0],
            "ul_interference_dbm_high": [-107.0],
        }
    )
    kpis = ["availability_pct", "dl_volume_mbit", "ul_interference_dbm"]
    row = clip_band(expected, kpis).row(0, named=True)
    assert (row["availability_pct_expected"], row["availability_pct_high"]) == (100.0, 100.0)
    assert row["availability_pct_low"] == 98.0
    assert (row["dl_volume_mbit_low"], row["dl_volume_mbit_high"]) == (0.0, 28.0)
    # Inside its limits (-150 to 0 dBm), interference is untouched.
    assert (row["ul_interference_dbm_low"], row["ul_interference_dbm_high"]) == (-111.0, -107.0)
    assert KPI_UNITS["availability_pct"] == "%" and KPI_UNITS["ul_interference_dbm"] == "dBm/PRB"
