"""Webhook notifications of new alerts: one JSON POST per scoring run, retried with
exponential backoff, never raising (a broken receiver must not stop scores reaching ops)."""

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

import polars as pl

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    url: str
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
            item["link"] = f"{page_url.rstrip('/')}/#cell={row['cell_id']}"
        items.append(item)
    return {"source": "cellpulse", "event": "alerts.opened", "count": len(items), "alerts": items}


def post_alerts(
    url: str,
    payload: dict[str, Any],
    retries: int,
    timeout_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POST `payload`; retry transport errors and 5xx/429 answers with 1, 2, 4 … s pauses."""
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
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                response.read()
            return Delivery(url, payload["count"], attempt, True)
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code != 429:
                break  # the receiver refuses this request: asking again will not help
        except (urllib.error.URLError, OSError) as exc:
            error = str(getattr(exc, "reason", exc))
        if attempt <= retries:
            sleep(2.0 ** (attempt - 1))
    log.warning("webhook %s failed after %d attempt(s): %s", url, attempt, error)
    return Delivery(url, payload["count"], attempt, False, error)


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and value != value:
        return None
    return value
