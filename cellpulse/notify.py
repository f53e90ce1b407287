"""Webhook notifications of new alerts: one JSON POST per scoring run, retried with
exponential backoff, never raising (a broken receiver must not stop scores reaching ops).

Only http(s) URLs are called and redirects are not followed (a receiver cannot send the
alerts to another scheme or host); the URL is printed and logged redacted only."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import polars as pl

from cellpulse.publish import cell_link
from cellpulse.redaction import redact_url

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    url: str  # redacted: fit to print
    alerts: int
    attempts: int
    delivered: bool
    error: str | None = None


def alert_payload(alerts: pl.DataFrame, page_url: str | None) -> dict[str, Any]:
    """The JSON body: one entry per new alert, with a link to the cell on the ops page."""
    items = []
    for row in alerts.iter_rows(named=True):
        item = {k: _plain(v) for k, v in row.items()}
        if page_url:
            item["link"] = cell_link(page_url, row["cell_id"])
        items.append(item)
    return {"source": "cellpulse", "event": "alerts.opened", "count": len(items), "alerts": items}


def post_alerts(
    url: str,
    payload: dict[str, Any],
    retries: int,
    timeout_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POST `payload`; retry transport errors and 5xx/429 answers with 1, 2, 4 … s pauses.
    A URL that is not http(s) is refused without a call."""
    shown = redact_url(url)
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        refused = f"refused: only http:// and https:// webhooks are called, not '{scheme}:'"
        log.warning("webhook %s %s", shown, refused)
        return Delivery(shown, payload["count"], 0, False, refused)
    body = json.dumps(payload).encode()
    error = None
    for attempt in range(1, retries + 2):
        request = urllib.request.Request(
            url,
            data=body,
            headers={"Content-Type": "application/json", "User-Agent": "cellpulse"},
            method="POST",
        )
        try:
            with _OPENER.open(request, timeout=timeout_s) as response:
                response.read()
            return Delivery(shown, payload["count"], attempt, True)
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code != 429:
                break  # the receiver refuses this request: asking again will not help
        except (urllib.error.URLError, OSError) as exc:
            error = str(getattr(exc, "reason", exc))
        if attempt <= retries:
            sleep(2.0 ** (attempt - 1))
    log.warning("webhook %s failed after %d attempt(s): %s", shown, attempt, error)
    return Delivery(shown, payload["count"], attempt, False, error)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as the HTTP error it is (3xx, not retried): followed, it
    could take the alerts to another host or scheme than the one configured."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and value != value:
        return None
    return value
