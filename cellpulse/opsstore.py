"""The ops store (DuckDB file by default): scores and alerts where ops tools read them.

Upserts are idempotent: re-publishing a period first deletes that period's rows, in the same
transaction, so a re-run replaces scores and never duplicates them.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    cell_id VARCHAR NOT NULL, ts TIMESTAMPTZ NOT NULL,
    site_id VARCHAR, region VARCHAR, rat VARCHAR, band VARCHAR,
    anomaly_score DOUBLE, is_anomaly BOOLEAN, anomaly_kpis VARCHAR[],
    congestion_prob DOUBLE, congestion_horizon VARCHAR,
    anomaly_model VARCHAR, anomaly_model_version VARCHAR, anomaly_run_id VARCHAR,
    congestion_model VARCHAR, congestion_model_version VARCHAR, congestion_run_id VARCHAR,
    scored_at TIMESTAMPTZ,
    PRIMARY KEY (cell_id, ts)
);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id VARCHAR PRIMARY KEY, cell_id VARCHAR NOT NULL, site_id VARCHAR, region VARCHAR,
    opened_at TIMESTAMPTZ NOT NULL, last_anomalous_at TIMESTAMPTZ, closed_at TIMESTAMPTZ,
    status VARCHAR NOT NULL, peak_score DOUBLE, kpis VARCHAR[], anomalous_rops UINTEGER,
    model_version VARCHAR, acknowledged_by VARCHAR, acknowledged_at TIMESTAMPTZ, comment VARCHAR
);
"""


class OpsStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._con = duckdb.connect(str(path))
        self._con.execute("SET TimeZone = 'UTC'")
        self._con.execute(_SCHEMA)

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> OpsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def replace_scores(self, scores: pl.DataFrame, start: datetime, end: datetime) -> None:
        """Make `scores` the content of [start, end) in one transaction."""
        arrow = scores.to_arrow()  # noqa: F841  (read by DuckDB's replacement scan)
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute("DELETE FROM scores WHERE ts >= ? AND ts < ?", [start, end])
            con.execute("INSERT INTO scores SELECT * FROM arrow")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise

    def upsert_alerts(self, alerts: pl.DataFrame) -> None:
        """Insert new alerts; update the timing of known ones, keeping acknowledgements."""
        if alerts.is_empty():
            return
        arrow = alerts.to_arrow()  # noqa: F841
        self._con.execute("""
            INSERT INTO alerts (alert_id, cell_id, site_id, region, opened_at, last_anomalous_at,
                                closed_at, status, peak_score, kpis, anomalous_rops, model_version)
            SELECT alert_id, cell_id, site_id, region, opened_at, last_anomalous_at, closed_at,
                   status, peak_score, kpis, anomalous_rops, model_version FROM arrow
            ON CONFLICT (alert_id) DO UPDATE SET
                last_anomalous_at = excluded.last_anomalous_at,
                closed_at = excluded.closed_at,
                status = CASE WHEN alerts.status IN ('acknowledged', 'false_alarm')
                              AND excluded.status = 'open' THEN alerts.status
                              ELSE excluded.status END,
                peak_score = excluded.peak_score, kpis = excluded.kpis,
                anomalous_rops = excluded.anomalous_rops, model_version = excluded.model_version
        """)

    def count(self, table: str) -> int:
        if table not in ("scores", "alerts"):
            raise ValueError(table)
        row = self._con.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0

    def query(self, sql: str, params: list[object] | None = None) -> pl.DataFrame:
        return self._con.execute(sql, params or []).pl()
