"""API latency under a bounded local load: an ops store holding one day of 100,000 cells
(9.6 M score rows), the API served by uvicorn on loopback, a fixed number of requests from a
few concurrent clients. Reports p50/p99 latency and errors per route."""

from __future__ import annotations

import socket
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import uvicorn
from pydantic import SecretStr

from bench.common import peak_rss_mb, record_table
from cellpulse.api import create_app
from cellpulse.opsstore import open_ops_store
from cellpulse.publish import SCORE_COLUMNS
from cellpulse.settings import ApiSettings, Settings

CELLS = 100_000
ROPS = 96
REQUESTS = 400  # per route
CLIENTS = 4
TOKEN = "bench-token-0123456789-abcdefghijklmn"
DAY = datetime(2026, 1, 13, tzinfo=UTC)


def score_day(cells: int, rops: int, seed: int = 1) -> pl.DataFrame:
    """A day of scores shaped like the score table (values random, sizes real)."""
    rng = np.random.default_rng(seed)
    n = cells * rops
    cell_ids = pl.Series([f"C{i:06d}" for i in range(cells)])
    frame = pl.DataFrame(
        {
            "cell_id": cell_ids.gather(np.repeat(np.arange(cells), rops)),
            "ts": pl.datetime_range(
                DAY, DAY + timedelta(minutes=15 * (rops - 1)), "15m", eager=True
            ).gather(np.tile(np.arange(rops), cells)),
        }
    )
    anomaly = rng.gamma(1.5, 1.0, n)
    return frame.with_columns(
        (pl.col("cell_id").str.slice(0, 5)).alias("site_id"),
        pl.when(pl.int_range(pl.len()) % 2 == 0)
        .then(pl.lit("north"))
        .otherwise(pl.lit("south"))
        .alias("region"),
        pl.lit("NR").alias("rat"),
        pl.lit("n78").alias("band"),
        pl.Series("anomaly_score", anomaly),
        pl.Series("is_anomaly", anomaly > 6),
        pl.lit(["prb_util_dl_pct"], pl.List(pl.String)).alias("anomaly_kpis"),
        pl.Series("congestion_prob", rng.beta(0.5, 8.0, n)),
        pl.lit("1h").alias("congestion_horizon"),
        pl.lit("cellpulse-anomaly").alias("anomaly_model"),
        pl.lit("1").alias("anomaly_model_version"),
        pl.lit("run").alias("anomaly_run_id"),
        pl.lit("cellpulse-congestion").alias("congestion_model"),
        pl.lit("1").alias("congestion_model_version"),
        pl.lit("run").alias("congestion_run_id"),
        pl.lit(DAY + timedelta(days=1)).alias("scored_at"),
    ).select(SCORE_COLUMNS)


def serve(settings: Settings) -> tuple[str, uvicorn.Server, threading.Thread]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


def load(base: str, path: str) -> tuple[list[float], int]:
    """REQUESTS requests from CLIENTS concurrent clients; latencies (s) and errors."""
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def one(_: int) -> tuple[float, bool]:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            t0 = time.perf_counter()
            ok = client.get(path).status_code == 200
            return time.perf_counter() - t0, ok

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(one, range(REQUESTS)))
    return [t for t, _ in results], sum(1 for _, ok in results if not ok)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cellpulse-bench-api-") as tmp:
        settings = Settings(home=Path(tmp) / "home").model_copy(
            update={"api": ApiSettings(token=SecretStr(TOKEN))}
        )
        scores = score_day(CELLS, ROPS)
        with open_ops_store(settings) as store:
            store.replace_scores(scores, DAY, DAY + timedelta(days=1))
        del scores
        base, server, thread = serve(settings)
        routes = [
            ("top 50 cells by anomaly", "/api/cells/top?limit=50"),
            (
                "top 50 cells by congestion, one region",
                "/api/cells/top?kind=congestion&region=north&limit=50",
            ),
            ("top cells, page 100", "/api/cells/top?limit=50&offset=5000"),
            ("one cell's day (scores + KPIs)", "/api/cells/C012345"),
            ("alerts", "/api/alerts?limit=50"),
            ("health", "/health"),
        ]
        rows = []
        try:
            for label, path in routes:
                load(base, path)  # warm-up (first query plans, file cache)
                latencies, errors = load(base, path)
                q = statistics.quantiles(latencies, n=100)
                rows.append(
                    [
                        label,
                        f"{REQUESTS}",
                        f"{CLIENTS}",
                        f"{statistics.median(latencies) * 1000:.0f}",
                        f"{q[98] * 1000:.0f}",
                        f"{REQUESTS / sum(latencies) * CLIENTS:.1f}",
                        str(errors),
                    ]
                )
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    record_table(
        "API latency",
        "python -m bench.run api",
        ["route", "requests", "clients", "p50 ms", "p99 ms", "≈ req/s", "errors"],
        rows,
        f"Ops store: DuckDB file with one day of {CELLS:,} cells ({CELLS * ROPS:,} score rows); "
        f"uvicorn on loopback in the benchmark process; each route warmed up once, then "
        f"{REQUESTS} requests from {CLIENTS} concurrent clients (one connection per request). "
        f"Peak RSS of the process: {peak_rss_mb():,.0f} MB.",
    )


if __name__ == "__main__":
    main()
