"""The API's doors, attacked without a server (FastAPI's TestClient, or the ASGI app called
directly): the token cannot be empty or short, its file is owner-only from its creation,
nothing unauthenticated or oversized is read, bad times and ids get a 4xx not a 500, every
cell id the contract accepts can be opened, and unauthenticated answers keep internals in."""

from __future__ import annotations

import asyncio
import os
import re
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import polars as pl
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import SecretStr

from cellpulse import contract
from cellpulse.api import ALERT_ID_PATTERN, MAX_BODY_BYTES, ApiTokenError, api_token, create_app
from cellpulse.errors import CellpulseError
from cellpulse.opsstore import OpsStoreUnavailable, open_ops_store
from cellpulse.publish import derive_alerts
from cellpulse.settings import ApiSettings, Settings
from tests.conftest import tiny_settings
from tests.unit.test_publish import T0, scores_for

TOKEN = "unit-test-token-0123456789abcdefghij"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Ids the contract accepts beyond plain words: spaces, parentheses, a 128-character id.
PLAIN_CELL = "S1-1"
ODD_CELLS = ["Cell 1", "a:b#c(d)=e+f@g.h-i_j", "NR (n78) #3", "x" * contract.CELL_ID_MAX_CHARS]


def with_token(settings: Settings, token: str | None) -> Settings:
    secret = None if token is None else SecretStr(token)
    return settings.model_copy(update={"api": ApiSettings(token=secret)})


@pytest.fixture
def scored(tmp_path) -> Settings:
    """An ops store holding scores and open alerts for cells with unusual (valid) ids."""
    settings = with_token(tiny_settings(tmp_path / "home"), TOKEN)
    scores = scores_for({cell: "..AAAA" for cell in [PLAIN_CELL, *ODD_CELLS]})
    with open_ops_store(settings) as store:
        store.replace_scores(scores, T0, T0 + timedelta(days=1))
        store.upsert_alerts(derive_alerts(scores, 4, 15))
    return settings


@pytest.fixture
def client(scored) -> TestClient:
    return TestClient(create_app(scored))


# ------------------------------------------------------------------------ the token (1)


@pytest.mark.parametrize(
    "token", ["", "   ", "short-token", "x" * 31, "spaces in a token of 40 chars"]
)
def test_an_empty_or_short_token_setting_refuses_to_start(tmp_path, token):
    settings = with_token(tiny_settings(tmp_path / "home"), token)
    with pytest.raises(ApiTokenError, match="at least 32") as raised:
        create_app(settings)
    assert isinstance(raised.value, CellpulseError)
    assert "CELLPULSE_API__TOKEN" in str(raised.value)
    if token.strip():
        assert token not in str(raised.value)  # the error never echoes a secret


@pytest.mark.parametrize("content", ["", "\n", "   \n", "too-short\n"])
def test_a_blank_or_short_token_file_is_an_error_naming_the_file(tmp_path, content):
    settings = tiny_settings(tmp_path / "home")
    path = settings.layout.api_token
    path.parent.mkdir(parents=True)
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(ApiTokenError) as raised:
        create_app(settings)
    message = str(raised.value)
    assert str(path) in message and "delete" in message and "32" in message


def test_with_an_empty_token_no_request_passes_without_authorization(tmp_path):
    """The attack: an empty token made compare_digest('', '') true for a missing header."""
    settings = with_token(tiny_settings(tmp_path / "home"), "")
    try:
        app = create_app(settings)
    except ApiTokenError:
        return  # refusing to start is the answer
    client = TestClient(app)
    for route in ("/api/cells/top", "/api/alerts"):
        assert client.get(route).status_code == 401
    assert client.post("/api/alerts/x/close", json={"by": "eve"}).status_code == 401


def test_the_token_file_is_owner_only_as_created(tmp_path, monkeypatch):
    """With the widest umask and every chmod disabled, the file is still 0600: it is created
    with that mode, never written wider and narrowed afterwards (a window where others could
    read it)."""
    settings = tiny_settings(tmp_path / "home")
    for module, name in ((os, "chmod"), (os, "fchmod"), (Path, "chmod")):
        monkeypatch.setattr(module, name, lambda *a, **k: None)
    old = os.umask(0)
    try:
        token = api_token(settings)
    finally:
        os.umask(old)
    mode = stat.S_IMODE(settings.layout.api_token.stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert len(token) >= 32 and settings.layout.api_token.read_text().strip() == token
    assert api_token(settings) == token  # kept, not remade


def test_a_token_file_others_can_read_is_refused(tmp_path):
    settings = tiny_settings(tmp_path / "home")
    token = api_token(settings)
    settings.layout.api_token.chmod(0o644)
    with pytest.raises(ApiTokenError, match="chmod 600"):
        create_app(settings)
    settings.layout.api_token.chmod(0o600)
    assert api_token(settings) == token


def test_a_dangling_link_in_the_token_files_place_is_an_error(tmp_path):
    settings = tiny_settings(tmp_path / "home")
    settings.home.mkdir(parents=True)
    settings.layout.api_token.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ApiTokenError, match="not a file"):
        create_app(settings)
    assert not (tmp_path / "elsewhere").exists()  # never created through the link


# ------------------------------------------------------- body, times, leaks (9)


def call(app: Any, method: str, path: str, headers: dict[str, str], chunks: list[bytes]):
    """Call the ASGI app directly, counting how much of the body it pulled."""
    pulled = {"messages": 0, "bytes": 0}
    sent: list[dict[str, Any]] = []
    queue = list(chunks)

    async def receive() -> dict[str, Any]:
        if not queue:
            return {"type": "http.disconnect"}
        pulled["messages"] += 1
        chunk = queue.pop(0)
        pulled["bytes"] += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(queue)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8750),
    }
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body.decode(), pulled


MIB = b"{" + b" " * (1024 * 1024 - 1)


def test_an_unauthenticated_post_is_refused_before_its_body_is_read(scored):
    app = create_app(scored)
    headers = {"content-type": "application/json", "content-length": str(8 * len(MIB))}
    status, body, pulled = call(app, "POST", "/api/alerts/x/acknowledge", headers, [MIB] * 8)
    assert status == 401 and "bearer token" in body
    assert pulled["messages"] == 0
    # A public prefix does not open the rest: the router sees the path as sent.
    for path in ("/static/../api/alerts", "/health/../api/alerts", "//api/alerts"):
        status, body, _ = call(app, "GET", path, {}, [b""])
        assert status in (401, 404) and "items" not in body


def test_an_oversized_body_is_refused_before_it_is_read(scored):
    app = create_app(scored)
    declared = {**AUTH, "content-type": "application/json", "content-length": str(8 * len(MIB))}
    status, body, pulled = call(app, "POST", "/api/alerts/x/acknowledge", declared, [MIB] * 8)
    assert status == 413 and "64 KiB" in body
    assert pulled["messages"] == 0
    # Chunked (no Content-Length): read up to the limit, then refused.
    chunk = b" " * 16384
    chunked = {**AUTH, "content-type": "application/json", "transfer-encoding": "chunked"}
    status, body, pulled = call(app, "POST", "/api/alerts/x/acknowledge", chunked, [chunk] * 512)
    assert status == 413
    assert pulled["bytes"] <= MAX_BODY_BYTES + len(chunk)


@pytest.mark.parametrize(
    ("route", "params"),
    [
        ("/api/cells/top", {"at": "0001-01-01T00:00:00+14:00"}),
        ("/api/cells/top", {"at": "9999-12-31T23:59:59-12:00"}),
        (f"/api/cells/{PLAIN_CELL}", {"end": "9999-12-31T23:59:59-12:00"}),
        (f"/api/cells/{PLAIN_CELL}", {"start": "0001-01-01T00:00:00+14:00"}),
        (f"/api/cells/{PLAIN_CELL}", {"end": "0001-01-01T00:00:00"}),
    ],
)
def test_a_time_out_of_range_gets_a_422_that_says_so(client, route, params):
    response = client.get(route, params=params, headers=AUTH)
    assert response.status_code == 422, response.text
    assert "out of range" in response.text


def test_error_answers_keep_internals_from_unauthenticated_callers(scored, monkeypatch):
    client = TestClient(create_app(scored))
    refused = client.get("/api/alerts")
    assert refused.status_code == 401
    assert "cellpulse api --help" in refused.json()["detail"]
    assert str(scored.home) not in refused.text and "api_token" not in refused.text

    # /health on a store another process holds: DuckDB's message names the file and the
    # holder's executable and PID.
    busy = OpsStoreUnavailable(
        f"ops store {scored.layout.ops_store} is busy (IO Error: Could not set lock on file "
        f'"{scored.layout.ops_store}": Conflicting lock is held in /usr/bin/python3.12 '
        "(PID 4242) by user ops); retry shortly"
    )

    def locked(*_: Any, **__: Any) -> Any:
        raise busy

    monkeypatch.setattr("cellpulse.api.open_ops_store", locked)
    health = client.get("/health")
    assert health.status_code == 503 and health.headers["retry-after"]
    for secret in (str(scored.home), "python", "4242", "ops store ops"):
        assert secret not in health.text
    assert "retry" in health.json()["detail"]


def test_a_cell_period_defaults_to_the_day_before_the_newest_rop_and_is_bounded():
    from fastapi import HTTPException

    from cellpulse.api.cells import cell_period

    newest = T0 + timedelta(hours=5)
    end = newest + timedelta(minutes=15)
    assert cell_period(newest, None, None, 15, 31) == (end - timedelta(days=1), end)
    assert cell_period(newest, T0, None, 15, 31) == (T0, end)
    with pytest.raises(HTTPException) as reversed_:
        cell_period(newest, end, T0, 15, 31)
    assert reversed_.value.status_code == 422 and "before end" in reversed_.value.detail
    with pytest.raises(HTTPException) as too_long:
        cell_period(newest, T0, T0 + timedelta(days=3, minutes=1), 15, 3)
    assert too_long.value.status_code == 422 and "longer than 3 days" in too_long.value.detail


# ------------------------------------------------------------------- cell ids (10)


@pytest.mark.parametrize("cell", ODD_CELLS)
def test_every_cell_id_the_contract_accepts_opens_in_the_api(client, cell):
    assert re.fullmatch(contract.CELL_ID_PATTERN, cell)
    view = client.get(f"/api/cells/{quote(cell, safe='')}", headers=AUTH)
    assert view.status_code == 200, view.text
    assert view.json()["cell_id"] == cell and len(view.json()["scores"]) == 6
    alerts = client.get("/api/alerts", params={"cell_id": cell}, headers=AUTH).json()["items"]
    assert [a["cell_id"] for a in alerts] == [cell]
    url = f"/api/alerts/{quote(alerts[0]['alert_id'], safe='')}"
    assert client.get(url, headers=AUTH).json()["cell_id"] == cell
    acked = client.post(f"{url}/acknowledge", json={"by": "ana"}, headers=AUTH)
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"


@pytest.mark.parametrize(
    ("cell", "status"),
    [
        ("<x>", 422),
        ("a/b", 404),  # a path separator: no route, never a 500
        ("Cell  1", 422),
        (" Cell", 422),
        ("Cell 1\n", 422),
        ("x" * (contract.CELL_ID_MAX_CHARS + 1), 422),
        ("é", 422),
    ],
)
def test_an_id_outside_the_rule_gets_a_4xx(client, cell, status):
    quoted = quote(cell, safe="")
    assert client.get(f"/api/cells/{quoted}", headers=AUTH).status_code == status
    query = client.get("/api/alerts", params={"cell_id": cell}, headers=AUTH)
    assert query.status_code == 422
    alert = client.get(f"/api/alerts/{quoted}@2026-01-05T00:30Z", headers=AUTH)
    # With a slash the path reads as /api/alerts/{id}/{action}, a POST-only route.
    assert alert.status_code == (405 if "/" in cell else status)


@given(
    cell=st.from_regex(contract.CELL_ID_PATTERN, fullmatch=True).filter(
        lambda c: len(c) <= contract.CELL_ID_MAX_CHARS
    )
)
@hypothesis_settings(max_examples=200, deadline=None, database=None)
def test_an_alert_id_made_from_any_valid_cell_id_follows_the_alert_rule(cell):
    scores = scores_for({cell: "AAAA"}).with_columns(pl.lit(cell).alias("cell_id"))
    alert_id = derive_alerts(scores, 4, 15)["alert_id"][0]
    assert re.fullmatch(ALERT_ID_PATTERN, alert_id), alert_id


@pytest.mark.parametrize("token", ["", "short"])
def test_the_api_command_refuses_a_short_token_with_one_line(tmp_path, monkeypatch, token):
    import uvicorn
    from typer.testing import CliRunner

    from cellpulse.cli import app

    served: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: served.append(a))
    home = tmp_path / "home"
    home.mkdir()
    result = CliRunner().invoke(
        app, ["api", "--home", str(home)], env={"CELLPULSE_API__TOKEN": token}
    )
    assert result.exit_code == 2 and not served
    assert "at least 32" in result.output and "Traceback" not in result.output
