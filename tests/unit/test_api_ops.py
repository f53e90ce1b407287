"""The ops routes a shift works from, without a server (FastAPI's TestClient on a small
store): the ranking window, the alert queue as incidents, one action on several alerts, and
a cell view about the alert of the period it shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from cellpulse.api import create_app
from cellpulse.api.cells import alert_period, ranking_window
from cellpulse.opsstore import open_ops_store
from cellpulse.publish import derive_alerts
from cellpulse.settings import ApiSettings, Settings
from tests.conftest import tiny_settings
from tests.unit.test_publish import T0, scores_for

TOKEN = "unit-test-token-0123456789abcdefghij"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAY2 = T0 + timedelta(days=1)
NEWEST = DAY2 + timedelta(minutes=15 * 11)


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Site "s" loses its three cells at 00:30 on day 1 (one alert each, an incident); cell
    t1 has a long, high alert on day 1 and a short one on day 2."""
    base = tiny_settings(tmp_path / "home")
    settings = base.model_copy(update={"api": ApiSettings(token=SecretStr(TOKEN))})
    day1 = scores_for(
        {"s1": "..AAAA......", "s2": "..AAAA......", "s3": "...AAA......", "t1": "..AAAAAAAA.."}
    )
    day2 = scores_for({"s1": "." * 12, "s2": "." * 12, "s3": "." * 12, "t1": "..AA........"}, DAY2)
    scores = pl.concat([day1, day2])
    with open_ops_store(settings) as store:
        store.replace_scores(scores, T0, DAY2 + timedelta(days=1))
        store.upsert_alerts(derive_alerts(scores, 4, 15))
        # The site's alerts are still being worked on.
        store.execute("UPDATE alerts SET status = 'open', closed_at = NULL WHERE site_id = 's'")
    return settings


@pytest.fixture
def client(settings) -> TestClient:
    return TestClient(create_app(settings))


def test_the_ranking_window_defaults_to_the_day_before_the_newest_rop():
    rop = timedelta(minutes=15)
    assert ranking_window(NEWEST, None, None, None, 15, 31) == (
        NEWEST + rop - timedelta(hours=24),
        NEWEST + rop,
    )
    assert ranking_window(NEWEST, None, None, T0, 15, 31) == (
        T0 + rop - timedelta(hours=24),
        T0 + rop,
    )
    assert ranking_window(NEWEST, T0, DAY2, None, 15, 31) == (T0, DAY2)
    # Too long: cut to its last max_days; inverted: kept, and holds no ROP.
    assert ranking_window(NEWEST, T0 - timedelta(days=40), T0, None, 15, 31) == (
        T0 - timedelta(days=31),
        T0,
    )
    assert ranking_window(NEWEST, DAY2, T0, None, 15, 31) == (DAY2, T0)


def test_a_ranking_over_the_window_keeps_the_morning_outage_first(client):
    window = client.get("/api/cells/top", headers=AUTH).json()
    assert window["end"] == "2026-01-06T03:00:00Z"
    # Every cell is normal at the newest ROP; over the day, t1's alert is the worst.
    assert [r["cell_id"] for r in window["items"]][:1] == ["t1"]
    assert window["items"][0]["anomalous_rops"] == 2
    whole = client.get(
        "/api/cells/top",
        params={"start": "2026-01-05T00:00:00Z", "end": "2026-01-07T00:00:00Z"},
        headers=AUTH,
    ).json()
    assert whole["items"][0]["cell_id"] == "t1" and whole["items"][0]["anomaly_score"] == 18.0
    assert whole["items"][0]["worst_at"] == "2026-01-05T02:15:00Z"
    backwards = client.get(
        "/api/cells/top",
        params={"start": "2026-01-06T00:00:00Z", "end": "2026-01-05T00:00:00Z"},
        headers=AUTH,
    )
    assert backwards.status_code == 200 and backwards.json()["items"] == []


def test_the_queue_shows_a_site_outage_as_one_incident_with_its_cells(client):
    queue = client.get("/api/incidents", headers=AUTH).json()
    assert queue["total"] == 1 and queue["alerts"] == 3  # t1's alerts are closed
    incident = queue["items"][0]
    assert incident["cells"] == ["s1", "s2", "s3"]
    assert incident["site_id"] == "s" and incident["severity"] == "critical"
    assert [a["cell_id"] for a in incident["alerts"]] == ["s1", "s2", "s3"]
    closed = client.get("/api/incidents", params={"status": "closed"}, headers=AUTH).json()
    assert [i["cells"] for i in closed["items"]] == [["t1"], ["t1"]]
    assert (
        client.get("/api/incidents", params={"severity": "minor"}, headers=AUTH).json()["total"]
        == 0
    )


def test_one_action_on_an_incident_acknowledges_each_alert(client):
    incident = client.get("/api/incidents", headers=AUTH).json()["items"][0]
    ids = [*incident["alert_ids"], "t1@2026-01-05T00:30Z"]
    answer = client.post(
        "/api/alerts/actions",
        json={"action": "acknowledge", "alert_ids": ids, "by": "ana", "comment": "power"},
        headers=AUTH,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["done"] == 3
    assert [(r["ok"], r["status"]) for r in body["results"]] == [(True, "acknowledged")] * 3 + [
        (False, "closed")
    ]
    queue = client.get("/api/incidents", params={"status": "acknowledged"}, headers=AUTH).json()
    assert queue["items"][0]["status"] == "acknowledged"
    assert (
        client.post(
            "/api/alerts/actions", json={"action": "close", "alert_ids": ids, "by": "x"}
        ).status_code
        == 401
    )
    empty = client.post(
        "/api/alerts/actions", json={"action": "close", "alert_ids": [], "by": "x"}, headers=AUTH
    )
    assert empty.status_code == 422


def test_a_cell_view_is_about_the_alert_of_its_period(client):
    # Default: no alert open on t1, so its last day; the alert shown is that day's, not
    # day 1's alert with the higher peak.
    view = client.get("/api/cells/t1", headers=AUTH).json()
    assert view["start"] == "2026-01-05T03:00:00Z"
    assert view["alert"]["alert_id"] == "t1@2026-01-06T00:30Z"
    asked = client.get("/api/cells/t1", params={"alert_id": "t1@2026-01-05T00:30Z"}, headers=AUTH)
    body = asked.json()
    assert body["alert"]["alert_id"] == "t1@2026-01-05T00:30Z"
    # The alert's span with six hours of context on each side.
    assert (body["start"], body["end"]) == ("2026-01-04T18:30:00Z", "2026-01-05T09:15:00Z")
    wrong_cell = client.get(
        "/api/cells/s1", params={"alert_id": "t1@2026-01-05T00:30Z"}, headers=AUTH
    )
    assert wrong_cell.status_code == 404 and "not on cell s1" in wrong_cell.text
    # An open alert is the default focus: s1's, with its context.
    site = client.get("/api/cells/s1", headers=AUTH).json()
    assert site["alert"]["alert_id"] == "s1@2026-01-05T00:30Z"
    assert site["start"] == "2026-01-04T18:30:00Z"


def test_an_alert_period_ends_at_the_newest_rop_and_within_max_days():
    opened = datetime(2026, 1, 1, tzinfo=UTC)
    alert = {"opened_at": opened, "last_anomalous_at": opened + timedelta(days=20)}
    start, end = alert_period(alert, opened + timedelta(days=20, hours=1), 15, 7)
    assert end == opened + timedelta(days=20, hours=1, minutes=15)
    assert start == end - timedelta(days=7)
