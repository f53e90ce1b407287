"""Webhook delivery against a real HTTP server on loopback: retries with backoff on server
errors, no retry on a refusal, and a dead receiver never raises."""

from __future__ import annotations

import json
import threading
import urllib.parse
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import polars as pl
import pytest

from cellpulse.notify import alert_payload, post_alerts
from tests.conftest import free_port

OPENED = datetime(2026, 1, 13, 9, 30, tzinfo=UTC)
ALERTS = pl.DataFrame(
    {
        "alert_id": ["c1@2026-01-13T09:30Z"],
        "cell_id": ["c1"],
        "opened_at": [OPENED],
        "peak_score": [float("nan")],
        "kpis": [["availability_pct"]],
    }
)


class Receiver:
    """A local webhook receiver answering with the given status codes, in order."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[dict] = []
        self.location: str | None = None  # answer every call with a redirect there
        self.gets = 0
        self.paths: list[str] = []  # path and query of every POST, as received
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.paths.append(self.path)
                if receiver.location:
                    self.send_response(302)
                    self.send_header("Location", receiver.location)
                    self.end_headers()
                    return
                receiver.bodies.append(json.loads(body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()

            def do_GET(self) -> None:  # where urllib would follow a 302 to (as a GET)
                receiver.gets += 1
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver_factory():
    made: list[Receiver] = []

    def make(statuses: list[int]) -> Receiver:
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_payload_links_each_alert_to_its_cell_on_the_ops_page():
    payload = alert_payload(ALERTS, "http://ops.example:8750/")
    assert payload["count"] == 1 and payload["event"] == "alerts.opened"
    item = payload["alerts"][0]
    assert item["link"] == "http://ops.example:8750/#cell=c1"
    assert item["opened_at"] == "2026-01-13T09:30:00+00:00"
    assert item["peak_score"] is None  # NaN is not JSON
    json.dumps(payload)


def test_server_errors_are_retried_with_backoff(receiver_factory):
    receiver = receiver_factory([500, 503])
    pauses: list[float] = []
    delivery = post_alerts(receiver.url, alert_payload(ALERTS, None), 3, 5.0, pauses.append)
    assert delivery.delivered and delivery.attempts == 3
    assert pauses == [1.0, 2.0]
    assert len(receiver.bodies) == 3 and receiver.bodies[-1]["alerts"][0]["cell_id"] == "c1"


def test_a_refusal_is_not_retried(receiver_factory):
    receiver = receiver_factory([400])
    delivery = post_alerts(receiver.url, alert_payload(ALERTS, None), 3, 5.0, lambda _: None)
    assert not delivery.delivered and delivery.attempts == 1 and delivery.error == "HTTP 400"


def test_a_dead_receiver_gives_up_quietly():
    port = free_port()  # nothing listens there
    pauses: list[float] = []
    delivery = post_alerts(
        f"http://127.0.0.1:{port}/", alert_payload(ALERTS, None), 2, 1.0, pauses.append
    )
    assert not delivery.delivered and delivery.attempts == 3 and pauses == [1.0, 2.0]
    assert delivery.error


def test_a_webhook_that_is_not_http_is_never_called(tmp_path):
    target = tmp_path / "hostname"
    target.write_text("box\n")
    delivery = post_alerts(target.as_uri(), alert_payload(ALERTS, None), 3, 1.0, lambda _: None)
    assert not delivery.delivered and delivery.attempts == 0
    assert "refused" in (delivery.error or "")


def test_a_redirect_is_not_followed(receiver_factory):
    elsewhere = receiver_factory([])
    redirecting = receiver_factory([])
    redirecting.location = elsewhere.url
    delivery = post_alerts(redirecting.url, alert_payload(ALERTS, None), 2, 1.0, lambda _: None)
    assert not delivery.delivered and delivery.error == "HTTP 302"
    assert elsewhere.bodies == [] and elsewhere.gets == 0


def test_a_failing_webhook_is_logged_and_reported_without_its_token(caplog):
    port = free_port()  # nothing listens there
    url = f"http://hook:s3cr3t-pw@127.0.0.1:{port}/hook?token=t0k-123&sig=abc"
    with caplog.at_level("WARNING", logger="cellpulse.notify"):
        delivery = post_alerts(url, alert_payload(ALERTS, None), 0, 1.0, lambda _: None)
    assert not delivery.delivered
    (record,) = caplog.records
    line = record.getMessage()
    assert f"127.0.0.1:{port}/hook" in line
    for secret in ("t0k-123", "s3cr3t-pw", "sig=abc"):
        assert secret not in line and secret not in delivery.url


def test_links_to_cells_survive_ids_with_spaces_and_hashes():
    """A contract-valid cell id with a space, '#' and '(' opens the right cell: the page
    decodes the hash with decodeURIComponent."""
    cell = "NR (n78) #3"
    alerts = ALERTS.with_columns(pl.lit(cell).alias("cell_id"))
    link = alert_payload(alerts, "http://ops.example:8750")["alerts"][0]["link"]
    prefix = "http://ops.example:8750/#cell="
    assert link.startswith(prefix)
    encoded = link.removeprefix(prefix)
    assert " " not in encoded and "#" not in encoded
    assert urllib.parse.unquote(encoded) == cell
