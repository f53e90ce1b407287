"""The ops API and web page on a tiny simulated network whose cell OUTAGE_CELL goes down on
the last day and stays down: API contract (auth, filters, paging, bad input, alert
lifecycle, feedback labels) and the page in a real headless Chromium."""

from __future__ import annotations

import re
import shutil
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner

from cellpulse.api import create_app
from cellpulse.cli import app
from cellpulse.features.store import load_events
from cellpulse.flows.pipeline import pipeline_flow
from cellpulse.settings import AlertSettings, ApiSettings, Settings
from cellpulse.simulator import build_topology, write_network
from tests.conftest import OUTAGE_CELL, TINY, free_port, outage_events, tiny_settings
from tests.unit.test_notify import Receiver

TOKEN = "test-token-0123456789-abcdefghijklmnop"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """The whole pipeline on a network with an outage running into the newest ROP, with a
    webhook receiver listening on loopback."""
    receiver = Receiver([503])  # the first call fails: the flow must retry it
    base = tiny_settings(tmp_path_factory.mktemp("api") / "home")
    settings = base.model_copy(
        update={"alerts": AlertSettings(webhook_url=receiver.url, webhook_retries=2)}
    )
    topo = build_topology(TINY)
    events = outage_events(topo, hours=15.0)  # 09:00 to the end of the last day
    write_network(
        TINY, settings.layout.landing, settings.layout.ground_truth, settings.congestion, events
    )
    result = pipeline_flow(settings)
    receiver.close()
    return settings, str(topo.cell_id[OUTAGE_CELL]), result, receiver


@pytest.fixture(scope="module")
def scored_home(pipeline_run) -> tuple[Path, str]:
    settings, outage_cell, _, _ = pipeline_run
    return settings.home, outage_cell


def test_scoring_posts_new_alerts_to_the_webhook_once(pipeline_run):
    _, outage_cell, result, receiver = pipeline_run
    assert result.score.webhook is not None and result.score.webhook.delivered
    assert result.score.webhook.attempts == 2
    body = receiver.bodies[-1]
    # Only alerts still open are sent: a first run over past days does not page for
    # events that are already over (the run found more new alerts than that).
    sent = body["alerts"]
    assert outage_cell in [a["cell_id"] for a in sent]
    assert all(a["status"] == "open" and a["closed_at"] is None for a in sent)
    assert result.score.new_alerts > body["count"] == len(sent)
    link = next(a["link"] for a in body["alerts"] if a["cell_id"] == outage_cell)
    assert link == f"http://127.0.0.1:8750/#cell={outage_cell}"


@pytest.fixture
def settings(scored_home, tmp_path) -> Settings:
    """A per-test copy of the ops store (tests change alerts), sharing the module's lake."""
    source, _ = scored_home
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(source / "ops.duckdb", home / "ops.duckdb")
    (home / "lake").symlink_to(source / "lake")
    base = tiny_settings(home)
    return base.model_copy(update={"api": ApiSettings(token=SecretStr(TOKEN), max_page=100)})


@pytest.fixture
def client(settings) -> TestClient:
    return TestClient(create_app(settings))


def test_every_route_but_health_needs_the_token(client):
    assert client.get("/health").status_code == 200
    routes = ["/api/cells/top", "/api/alerts", "/api/models", "/api/feedback/labels"]
    for route in routes:
        missing = client.get(route)
        assert missing.status_code == 401 and "bearer token" in missing.json()["detail"]
        wrong = client.get(route, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert client.get(route, headers=AUTH).status_code == 200
    post = client.post("/api/alerts/x/acknowledge", json={"by": "ana"})
    assert post.status_code == 401


def test_top_cells_rank_the_outage_cell_first_and_page(client, scored_home):
    _, outage_cell = scored_home
    top = client.get("/api/cells/top", params={"limit": 5}, headers=AUTH).json()
    assert top["total"] == TINY.cells
    assert top["items"][0]["cell_id"] == outage_cell
    assert top["items"][0]["alert_status"] == "open"
    assert (top["items"][0]["alert_type"], top["items"][0]["alert_severity"]) == (
        "outage",
        "critical",
    )
    scores = [row["anomaly_score"] for row in top["items"]]
    assert scores == sorted(scores, reverse=True)

    pages = [
        client.get("/api/cells/top", params={"limit": 5, "offset": o}, headers=AUTH).json()
        for o in (0, 5, 10)
    ]
    ids = [row["cell_id"] for page in pages for row in page["items"]]
    assert len(ids) == TINY.cells and len(set(ids)) == TINY.cells

    congestion = client.get("/api/cells/top", params={"kind": "congestion"}, headers=AUTH)
    probs = [row["congestion_prob"] for row in congestion.json()["items"]]
    assert probs == sorted(probs, reverse=True)


def test_filters_narrow_the_ranking(client):
    everything = client.get("/api/cells/top", params={"limit": 100}, headers=AUTH).json()
    region = everything["items"][0]["region"]
    only = client.get("/api/cells/top", params={"region": region}, headers=AUTH).json()
    assert only["total"] == sum(1 for r in everything["items"] if r["region"] == region)
    assert {r["region"] for r in only["items"]} == {region}
    none = client.get("/api/cells/top", params={"region": "atlantis"}, headers=AUTH).json()
    assert none["total"] == 0 and none["items"] == []


@pytest.mark.parametrize(
    ("route", "params", "status", "needle"),
    [
        ("/api/cells/top", {"limit": 101}, 422, "less than or equal to 100"),
        ("/api/cells/top", {"limit": 0}, 422, "greater than or equal to 1"),
        ("/api/cells/top", {"kind": "weather"}, 422, "anomaly"),
        ("/api/cells/top", {"at": "yesterday"}, 422, "datetime"),
        ("/api/alerts", {"status": "sleeping"}, 422, "open"),
        ("/api/alerts", {"cell_id": "x' OR 1=1 --"}, 422, "pattern"),
        ("/api/cells/..%2F..%2Fetc%2Fpasswd", {}, 404, "Not Found"),
        ("/api/cells/a%3Bdrop", {}, 422, "pattern"),
        ("/static/..%2F..%2Fsettings.py", {}, 404, "Not Found"),
        ("/api/cells/no-such-cell", {}, 404, "no scores for cell"),
        ("/api/alerts/no-such-cell@2026-01-01T00:00Z", {}, 404, "no alert"),
        ("/api/alerts/no-such-alert", {}, 422, "pattern"),
    ],
)
def test_bad_parameters_get_a_4xx_that_says_why(client, route, params, status, needle):
    response = client.get(route, params=params, headers=AUTH)
    assert response.status_code == status, response.text
    assert needle in response.text


def test_a_cell_view_holds_scores_and_kpis_and_bounds_the_period(client, scored_home):
    _, outage_cell = scored_home
    view = client.get(f"/api/cells/{outage_cell}", headers=AUTH).json()
    # Default: the open alert's span, from 6 hours before it opened to the newest ROP.
    alert = view["alert"]
    assert alert["status"] == "open" and alert["alert_type"] == "outage"
    opened = datetime.fromisoformat(alert["opened_at"])
    assert datetime.fromisoformat(view["start"]) == opened - timedelta(hours=6)
    rops = (datetime.fromisoformat(view["end"]) - opened) // timedelta(minutes=15) + 24
    assert len(view["scores"]) == len(view["kpis"]) == rops
    assert any(s["is_anomaly"] for s in view["scores"])
    day = client.get(
        f"/api/cells/{outage_cell}",
        params={"start": (datetime.fromisoformat(view["end"]) - timedelta(days=1)).isoformat()},
        headers=AUTH,
    ).json()
    assert len(day["scores"]) == TINY.rops_per_day  # the last day, asked for
    view = day
    # The outage: the cell is unavailable for whole ROPs at the end of the day, far below
    # the band the normal-behaviour model expected.
    assert view["kpis"][-1]["unavail_s"] == pytest.approx(TINY.rop_minutes * 60)
    assert "availability_pct" in view["watched_kpis"]
    assert len(view["expected"]) == TINY.rops_per_day
    first, last = view["expected"][0], view["expected"][-1]
    assert (
        first["availability_pct_low"] <= first["availability_pct"] <= first["availability_pct_high"]
    )
    assert last["availability_pct"] < last["availability_pct_low"]
    too_long = client.get(
        f"/api/cells/{outage_cell}",
        params={"start": "2026-01-01T00:00:00Z", "end": "2026-03-01T00:00:00Z"},
        headers=AUTH,
    )
    assert too_long.status_code == 422 and "longer than 31 days" in too_long.text


def test_alert_lifecycle_is_recorded_and_survives_rescoring(
    client, settings, scored_home, restore_environ
):
    _, outage_cell = scored_home
    alerts = client.get(
        "/api/alerts", params={"cell_id": outage_cell, "status": "open"}, headers=AUTH
    ).json()
    alert_id = alerts["items"][0]["alert_id"]
    url = f"/api/alerts/{alert_id}"

    acked = client.post(
        f"{url}/acknowledge", json={"by": "ana", "comment": "site visit"}, headers=AUTH
    )
    assert acked.status_code == 200
    assert acked.json()["status"] == "acknowledged" and acked.json()["acknowledged_by"] == "ana"
    again = client.post(f"{url}/acknowledge", json={"by": "bo"}, headers=AUTH)
    assert again.status_code == 409 and "is acknowledged" in again.json()["detail"]
    assert client.post(f"{url}/close", json={"by": ""}, headers=AUTH).status_code == 422

    # Re-publishing the same alert as open (a re-score) keeps the person's decision.
    from cellpulse.opsstore import open_ops_store

    with open_ops_store(settings) as store:
        row = store.query(
            "SELECT * EXCLUDE (acknowledged_by, acknowledged_at, comment) FROM alerts "
            "WHERE alert_id = ?",
            [alert_id],
        )
        store.upsert_alerts(row.with_columns(pl.lit("open").alias("status")))
    assert client.get(url, headers=AUTH).json()["status"] == "acknowledged"

    closed = client.post(f"{url}/close", json={"by": "ana", "comment": "fixed"}, headers=AUTH)
    assert closed.json()["status"] == "closed" and closed.json()["closed_at"] is not None
    history = client.get(url, headers=AUTH).json()["history"]
    assert [(h["action"], h["actor"]) for h in history] == [
        ("acknowledge", "ana"),
        ("close", "ana"),
    ]

    labels = client.get("/api/feedback/labels", headers=AUTH).json()["items"]
    assert [(lab["cell_id"], lab["label"]) for lab in labels] == [(outage_cell, "confirmed")]

    # The same verdicts as a labels file that `evaluate --labels` and `train --labels` read.
    exported = CliRunner().invoke(app, ["labels", "--home", str(settings.home)])
    assert exported.exit_code == 0, exported.output
    assert "1 confirmed event(s) and 0 false alarm(s)" in exported.output
    events = load_events(settings.layout.operator_labels)
    assert events is not None
    assert events.select("cell_id", "kind", "type").rows() == [
        (outage_cell, "fault", "operator_confirmed")
    ]


def test_models_in_use_name_the_champions(client):
    items = client.get("/api/models", headers=AUTH).json()["items"]
    assert {(i["kind"], i["version"]) for i in items} == {("anomaly", "1"), ("congestion", "1")}
    assert sum(i["rows"] for i in items if i["kind"] == "anomaly") == (
        TINY.cells * TINY.days * TINY.rops_per_day
    )


def test_the_openapi_schema_lists_every_route(client):
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {
        "/health",
        "/api/cells/top",
        "/api/cells/{cell_id}",
        "/api/alerts",
        "/api/alerts/{alert_id}",
        "/api/alerts/{alert_id}/{action}",
        "/api/alerts/actions",
        "/api/incidents",
        "/api/models",
        "/api/feedback/labels",
    } <= paths


# ---------------------------------------------------------------- the page, in Chromium

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def served(settings):
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian's chromium and chromium-driver are not installed (make test installs them)",
)


@pytest.fixture
def browser():
    """A real headless Chromium, its console log kept (a script error is a test failure)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def script_errors(driver) -> list[str]:
    """The page's JavaScript errors so far (not the favicon the page does not have)."""
    return [
        e["message"]
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and "favicon" not in e["message"]
    ]


def log_in(driver, url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    WebDriverWait(driver, 20).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#cells tbody tr:first-child"))
    )


def wait_for(driver, condition, timeout: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def outage_alert(settings: Settings, outage_cell: str) -> dict:
    from cellpulse.opsstore import open_ops_store

    with open_ops_store(settings, read_only=True) as store:
        rows = store.query(
            "SELECT * FROM alerts WHERE cell_id = ? ORDER BY opened_at DESC LIMIT 1", [outage_cell]
        )
    return rows.row(0, named=True)


PEOPLES_COLUMNS = ("acknowledged_by", "acknowledged_at", "comment")


def add_alerts(settings: Settings, like: dict, cells: list[tuple[str, str, int]]) -> list[str]:
    """Alerts shaped like `like` on other cells: (cell_id, site_id, minutes after it opened)."""
    from datetime import timedelta

    from cellpulse.opsstore import open_ops_store

    rows = []
    for cell, site, minutes in cells:
        opened = like["opened_at"] + timedelta(minutes=minutes)
        rows.append(
            {
                **{k: v for k, v in like.items() if k not in PEOPLES_COLUMNS},
                "alert_id": f"{cell}@{opened:%Y-%m-%dT%H:%MZ}",
                "cell_id": cell,
                "site_id": site,
                "opened_at": opened,
            }
        )
    frame = pl.DataFrame(rows)
    with open_ops_store(settings) as store:
        store.upsert_alerts(frame)
    return frame["alert_id"].to_list()


def cells_of_sites(settings: Settings) -> dict[str, list[str]]:
    from cellpulse.opsstore import open_ops_store

    with open_ops_store(settings, read_only=True) as store:
        rows = store.query("SELECT DISTINCT site_id, cell_id FROM scores ORDER BY cell_id")
    sites: dict[str, list[str]] = {}
    for site, cell in rows.iter_rows():
        sites.setdefault(site, []).append(cell)
    return sites


def site_of(sites: dict[str, list[str]], cell: str) -> str:
    return next(site for site, cells in sites.items() if cell in cells)


@needs_chromium
def test_the_page_ranks_the_outage_first_draws_the_cell_and_acknowledges(
    served, scored_home, settings, browser, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    _, outage_cell = scored_home
    driver = browser
    log_in(driver, served)
    first = driver.find_element(By.CSS_SELECTOR, "#cells tbody tr:first-child")
    assert first.get_attribute("data-cell") == outage_cell
    assert "open · outage (critical)" in first.text
    assert driver.find_element(By.ID, "updated").text.startswith("updated at ")

    first.click()
    wait_for(driver, ec.presence_of_element_located((By.CSS_SELECTOR, "#chart path.kpi-line")))
    assert driver.find_elements(By.CSS_SELECTOR, "#chart path.expected-band")
    assert driver.find_elements(By.CSS_SELECTOR, "#chart circle.anomaly-marker")
    assert driver.find_elements(By.CSS_SELECTOR, "#score-chart path.score-line")
    assert "status-open" in driver.find_element(By.ID, "cell-alert").get_attribute("class")
    # Floats are rounded wherever they are shown: the ranking, the alert line, tooltips.
    shown = " ".join(
        [
            driver.find_element(By.ID, "cells").text,
            driver.find_element(By.ID, "cell-alert").text,
            *(
                t.get_attribute("textContent")
                for t in driver.find_elements(By.CSS_SELECTOR, "svg title")
            ),
            *(t.text for t in driver.find_elements(By.CSS_SELECTOR, "svg text")),
        ]
    )
    assert not re.search(r"\d\.\d{4,}", shown), "an unrounded number is shown"
    driver.save_screenshot(str(tmp_path / "ops-page-cell.png"))

    driver.find_element(By.ID, "actor").send_keys("night-shift")
    driver.find_element(By.ID, "ack").click()
    wait_for(
        driver,
        ec.text_to_be_present_in_element((By.ID, "cell-alert"), "acknowledged by night-shift"),
    )
    assert script_errors(driver) == []
    assert outage_alert(settings, outage_cell)["status"] == "acknowledged"
    assert outage_alert(settings, outage_cell)["acknowledged_by"] == "night-shift"


@needs_chromium
def test_the_window_ranking_keeps_an_outage_of_the_day_first_at_its_end(
    served, scored_home, settings, browser, tmp_path
):
    """The outage cell recovers at noon: at the day's last ROP its score is normal, yet the
    ranking of the last 24 h still puts it first; a window before the outage does not."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    from cellpulse.opsstore import open_ops_store

    _, outage_cell = scored_home
    with open_ops_store(settings) as store:
        newest = store.newest_ts()
        noon = newest.replace(hour=12, minute=0)
        store.execute(
            "UPDATE scores SET anomaly_score = 0.5, is_anomaly = FALSE, "
            "anomaly_kpis = CAST([] AS VARCHAR[]) WHERE cell_id = ? AND ts >= ?",
            [outage_cell, noon],
        )
    at_newest = TestClient(create_app(settings)).get(
        "/api/cells/top", params={"start": newest.isoformat(), "limit": 100}, headers=AUTH
    )
    assert at_newest.json()["items"][0]["cell_id"] != outage_cell  # the last ROP alone

    driver = browser
    log_in(driver, served)
    first = driver.find_element(By.CSS_SELECTOR, "#cells tbody tr:first-child")
    assert first.get_attribute("data-cell") == outage_cell
    worst_at = first.find_elements(By.CSS_SELECTOR, "td")[6].text
    assert f"{noon:%m-%d}" in worst_at and worst_at < f"{noon:%m-%d %H:%M}"
    assert "Window" in driver.find_element(By.ID, "window").text
    driver.save_screenshot(str(tmp_path / "ops-page-window.png"))

    # A window before the outage, picked on the page: the cell is normal there.
    morning = f"{noon:%Y-%m-%d}T00:00"
    driver.execute_script(
        "document.getElementById('win-start').value = arguments[0];"
        "document.getElementById('win-end').value = arguments[1];",
        morning,
        f"{noon:%Y-%m-%d}T09:00",
    )
    driver.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    wait_for(driver, ec.text_to_be_present_in_element((By.ID, "window"), f"{noon:%m-%d} 09:00"))
    first = driver.find_element(By.CSS_SELECTOR, "#cells tbody tr:first-child")
    assert first.get_attribute("data-cell") != outage_cell
    assert script_errors(driver) == []


@needs_chromium
def test_the_queue_acknowledges_two_selected_alerts_and_shows_an_incident(
    served, scored_home, settings, browser, tmp_path
):
    """Two more cells of the outage's site go down with it (one incident of three cells),
    and a cell of another site has an alert of its own: the queue has two rows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    _, outage_cell = scored_home
    sites = cells_of_sites(settings)
    site = site_of(sites, outage_cell)
    siblings = [c for c in sites[site] if c != outage_cell][:2]
    assert len(siblings) == 2
    other_site = next(s for s in sites if s != site)
    loner = sites[other_site][0]
    like = outage_alert(settings, outage_cell)
    from cellpulse.opsstore import open_ops_store

    with open_ops_store(settings) as store:  # the queue holds the alerts this test places
        store.execute("DELETE FROM alerts WHERE cell_id <> ?", [outage_cell])
    add_alerts(settings, like, [(siblings[0], site, 0), (siblings[1], site, 15)])
    (loner_alert,) = add_alerts(settings, like, [(loner, other_site, 120)])

    driver = browser
    log_in(driver, served)
    rows = wait_for(
        driver,
        lambda d: (
            (r := d.find_elements(By.CSS_SELECTOR, "#incidents tbody tr")) and len(r) == 2 and r
        ),
    )
    incident = next(r for r in rows if r.get_attribute("data-incident") != loner_alert)
    cells = incident.find_element(By.CSS_SELECTOR, "td.cells")
    assert "incident · 3 cells" in cells.text
    assert sorted(
        b.text for b in cells.find_elements(By.CSS_SELECTOR, "button.cell-link")
    ) == sorted([outage_cell, *siblings])
    assert "critical" in incident.text and "outage" in incident.text
    driver.execute_script("document.getElementById('queue').scrollIntoView()")
    driver.save_screenshot(str(tmp_path / "ops-page-queue.png"))

    for row in rows:
        row.find_element(By.CSS_SELECTOR, "input.pick").click()
    driver.find_element(By.ID, "q-actor").send_keys("day-shift")
    driver.find_element(By.ID, "q-ack").click()
    wait_for(driver, ec.text_to_be_present_in_element((By.ID, "q-result"), "4 of 4 alert(s)"))
    wait_for(
        driver,
        lambda d: all(
            "acknowledged" in r.text
            for r in d.find_elements(By.CSS_SELECTOR, "#incidents tbody tr")
        ),
    )
    driver.save_screenshot(str(tmp_path / "ops-page-queue-acknowledged.png"))
    assert script_errors(driver) == []

    from cellpulse.opsstore import open_ops_store

    with open_ops_store(settings, read_only=True) as store:
        done = store.query(
            "SELECT cell_id, status, acknowledged_by FROM alerts WHERE cell_id IN (?, ?, ?, ?) "
            "AND status IN ('open', 'acknowledged') ORDER BY cell_id",
            [outage_cell, *siblings, loner],
        ).rows()
    assert done == sorted((c, "acknowledged", "day-shift") for c in [outage_cell, *siblings, loner])


@needs_chromium
def test_a_negative_kpi_gets_an_axis_that_fits_its_values(
    served, scored_home, settings, browser, tmp_path
):
    """Uplink interference sits near -110 dBm: its axis spans its values (and band), not
    0 to -110, and each point's tooltip gives its value, unit and expected band, rounded."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select

    _, outage_cell = scored_home
    driver = browser
    log_in(driver, served)
    driver.find_element(By.CSS_SELECTOR, "#cells tbody tr:first-child").click()
    wait_for(driver, ec.presence_of_element_located((By.CSS_SELECTOR, "#chart path.kpi-line")))
    Select(driver.find_element(By.ID, "kpi")).select_by_value("ul_interference_dbm")
    wait_for(
        driver,
        ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#chart text.unit"), "dBm/PRB"),
    )
    view = TestClient(create_app(settings)).get(f"/api/cells/{outage_cell}", headers=AUTH).json()
    values = [
        r[k]
        for r in view["expected"]
        for k in ("ul_interference_dbm", "ul_interference_dbm_low", "ul_interference_dbm_high")
        if r[k] is not None
    ]
    lo, hi = min(values), max(values)
    assert hi < 0
    chart = driver.find_element(By.ID, "chart")
    ymin, ymax = float(chart.get_attribute("data-ymin")), float(chart.get_attribute("data-ymax"))
    room = 0.1 * (hi - lo) + 0.5
    assert lo - room <= ymin <= lo and hi <= ymax <= hi + room and ymax < 0
    ticks = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "#chart text.ytick")]
    assert ticks and all(t.startswith("-") for t in ticks)
    tips = [
        t.get_attribute("textContent")
        for t in chart.find_elements(By.CSS_SELECTOR, "circle.kpi-pt title")
    ]
    # One point per ROP with a value (a cell that is down reports no interference).
    assert len(tips) == sum(r["ul_interference_dbm"] is not None for r in view["expected"]) > 0
    assert re.search(r"ul_interference_dbm -\d+\.\d{2} dBm/PRB · expected -\d+\.\d{2}", tips[0])
    driver.save_screenshot(str(tmp_path / "ops-page-interference.png"))
    assert script_errors(driver) == []


@needs_chromium
def test_the_alert_actions_show_only_for_an_active_alert(
    served, scored_home, settings, browser, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    _, outage_cell = scored_home
    client = TestClient(create_app(settings))
    quiet = next(
        cell
        for cells in cells_of_sites(settings).values()
        for cell in cells
        if not client.get("/api/alerts", params={"cell_id": cell}, headers=AUTH).json()["total"]
    )
    driver = browser
    log_in(driver, served)
    driver.get(f"{served}/#cell={quiet}")
    driver.refresh()
    wait_for(driver, ec.text_to_be_present_in_element((By.ID, "cell-alert"), "No alert"))
    assert not driver.find_element(By.ID, "alert-actions").is_displayed()
    # A stale click on a hidden button does nothing (and throws nothing).
    driver.execute_script("document.getElementById('close').click()")
    driver.save_screenshot(str(tmp_path / "ops-page-no-alert.png"))

    driver.get(f"{served}/#cell={outage_cell}")
    driver.refresh()
    wait_for(driver, ec.visibility_of_element_located((By.ID, "alert-actions")))
    driver.find_element(By.ID, "actor").send_keys("ana")
    driver.find_element(By.ID, "close").click()
    wait_for(driver, ec.text_to_be_present_in_element((By.ID, "cell-alert"), "closed by ana"))
    assert not driver.find_element(By.ID, "alert-actions").is_displayed()
    assert script_errors(driver) == []


@needs_chromium
def test_the_token_survives_a_reload_and_a_new_tab_until_forgotten(
    served, scored_home, settings, browser, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    _, outage_cell = scored_home
    driver = browser
    driver.get(served)
    help_text = driver.find_element(By.ID, "token-help")
    assert help_text.is_displayed() and "api_token" in help_text.text
    assert "cellpulse api" in help_text.text
    assert str(settings.home) not in driver.page_source  # the page names no path of this host
    driver.save_screenshot(str(tmp_path / "ops-page-login.png"))
    log_in(driver, served)
    assert not driver.find_element(By.ID, "token-help").is_displayed()

    driver.refresh()
    wait_for(driver, ec.presence_of_element_located((By.CSS_SELECTOR, "#cells tbody tr")))
    # A deep link from a webhook, opened in a new tab.
    driver.switch_to.new_window("tab")
    driver.get(f"{served}/#cell={outage_cell}")
    wait_for(driver, ec.text_to_be_present_in_element((By.ID, "cell-title"), outage_cell))
    assert driver.find_element(By.ID, "token").get_attribute("value") == TOKEN

    driver.find_element(By.ID, "forget").click()
    assert driver.find_element(By.ID, "token-help").is_displayed()
    driver.refresh()
    assert driver.find_element(By.ID, "token").get_attribute("value") == ""
    time.sleep(1)
    assert driver.find_elements(By.CSS_SELECTOR, "#cells tbody tr") == []
    assert script_errors(driver) == []


def test_every_operation_survives_generated_input(settings):
    """Every operation of the OpenAPI schema fuzzed by schemathesis (hypothesis-generated
    paths, queries and bodies, hostile strings included), authenticated: no server error,
    and every status code, content type and response body as the schema documents."""
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings

    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(settings))
    operations = [result.ok() for result in schema.get_all_operations()]
    # health, top, cell, alerts, incidents, actions, alert, action, models, labels
    assert len(operations) == 10
    tried = 0
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def fuzz(case):
            nonlocal tried
            tried += 1
            case.call_and_validate(headers=AUTH)

        fuzz()
    assert tried >= 100


def test_health_on_a_store_another_process_holds_names_no_internals(settings):
    """DuckDB's lock error names the file and the holder's program and PID: /health answers
    anyone, so it says only that the store is busy."""
    import subprocess
    import sys

    hold = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
        "print('held', flush=True); time.sleep(120)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(settings.layout.ops_store)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        response = TestClient(create_app(settings)).get("/health")
    finally:
        holder.kill()
        holder.wait()
    assert response.status_code == 503 and response.headers["retry-after"]
    assert response.json() == {"detail": "the ops store is busy or unreachable; retry shortly"}
    for internal in (str(settings.home), "python", str(holder.pid)):
        assert internal not in response.text
