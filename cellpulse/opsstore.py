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
        self.execute("SET TimeZone = 'UTC'")
        self.execute(_SCHEMA)

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> OpsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def replace_scores(self, scores: pl.DataFrame, start: datetime, end: datetime) -> None:
        """Make `scores` the content of [start, end) in one transaction."""
        self._con.register("incoming", scores.to_arrow())
        self.execute("BEGIN TRANSACTION")
        try:
            self.execute("DELETE FROM scores WHERE ts >= ? AND ts < ?", [start, end])
            self.execute("INSERT INTO scores SELECT * FROM incoming")
            self.execute("COMMIT")
        except Exception:
            self.execute("ROLLBACK")
            raise
        finally:
            self._con.unregister("incoming")

    def upsert_alerts(self, alerts: pl.DataFrame) -> None:
        """Insert new alerts; update the timing of known ones, keeping acknowledgements."""
        if alerts.is_empty():
            return
        self._con.register("incoming", alerts.to_arrow())
        try:
            self._upsert_incoming_alerts()
        finally:
            self._con.unregister("incoming")

    def _upsert_incoming_alerts(self) -> None:
        self.execute("""
            INSERT INTO alerts (alert_id, cell_id, site_id, region, opened_at, last_anomalous_at,
                                closed_at, status, peak_score, kpis, anomalous_rops, model_version)
            SELECT alert_id, cell_id, site_id, region, opened_at, last_anomalous_at, closed_at,
                   status, peak_score, kpis, anomalous_rops, model_version FROM incoming
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
        return int(self.query(f"SELECT count(*) AS n FROM {table}")["n"][0])

    def execute(self, sql: str, params: list[object] | None = None) -> None:
        """Run a statement to completion (DuckDB keeps a connection busy until it is)."""
        self._con.execute(sql, params or []).fetchall()

    def query(self, sql: str, params: list[object] | None = None) -> pl.DataFrame:
        result = pl.from_arrow(self._con.sql(sql, params=params or None).to_arrow_table())
        assert isinstance(result, pl.DataFrame)
        return result
