"""The ops store (DuckDB file by default): scores and alerts where ops tools read them.

Upserts are idempotent: re-publishing a period first deletes that period's rows, in the same
transaction, so a re-run replaces scores and never duplicates them. Alerts follow a
lifecycle (open -> acknowledged -> closed, or false_alarm) that people drive through the API;
every action is kept in `alert_actions` with who, when and why, and re-scoring never undoes
a person's decision.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Protocol

import duckdb
import polars as pl

from cellpulse.errors import CellpulseError, NoDataError
from cellpulse.redaction import redact_url
from cellpulse.settings import Settings

# One dialect for DuckDB and PostgreSQL: portable types, DISTINCT ON instead of QUALIFY,
# explicit GROUP BY, typed parameters where a NULL may be passed.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    cell_id VARCHAR NOT NULL, ts TIMESTAMPTZ NOT NULL,
    site_id VARCHAR, region VARCHAR, rat VARCHAR, band VARCHAR,
    anomaly_score DOUBLE PRECISION, is_anomaly BOOLEAN, anomaly_kpis VARCHAR[],
    congestion_prob DOUBLE PRECISION, congestion_horizon VARCHAR,
    anomaly_model VARCHAR, anomaly_model_version VARCHAR, anomaly_run_id VARCHAR,
    congestion_model VARCHAR, congestion_model_version VARCHAR, congestion_run_id VARCHAR,
    scored_at TIMESTAMPTZ,
    PRIMARY KEY (cell_id, ts)
);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id VARCHAR PRIMARY KEY, cell_id VARCHAR NOT NULL, site_id VARCHAR, region VARCHAR,
    opened_at TIMESTAMPTZ NOT NULL, last_anomalous_at TIMESTAMPTZ, closed_at TIMESTAMPTZ,
    status VARCHAR NOT NULL, peak_score DOUBLE PRECISION, kpis VARCHAR[], anomalous_rops INTEGER,
    model_version VARCHAR, acknowledged_by VARCHAR, acknowledged_at TIMESTAMPTZ, comment VARCHAR
);
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS alert_type VARCHAR;
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS severity VARCHAR;
-- Earlier versions kept each cell's newest score apart; the ranking reads scores by window now.
DROP TABLE IF EXISTS latest_scores;
CREATE TABLE IF NOT EXISTS alert_actions (
    alert_id VARCHAR NOT NULL, action VARCHAR NOT NULL, status_before VARCHAR NOT NULL,
    status_after VARCHAR NOT NULL, actor VARCHAR NOT NULL, acted_at TIMESTAMPTZ NOT NULL,
    comment VARCHAR
);
"""

# action -> (statuses it applies to, status after). A person's decision is final for the
# alert: re-scoring updates its timing but never reopens it.
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "acknowledge": (frozenset({"open"}), "acknowledged"),
    "close": (frozenset({"open", "acknowledged"}), "closed"),
    "false_alarm": (frozenset({"open", "acknowledged"}), "false_alarm"),
}
RANK_COLUMNS = {"anomaly": "anomaly_score", "congestion": "congestion_prob"}


class AlertNotFound(LookupError):
    pass


class TransitionRefused(ValueError):
    pass


class _Backend(Protocol):
    def execute(self, sql: str, params: Sequence[object]) -> None: ...
    def query(self, sql: str, params: Sequence[object]) -> pl.DataFrame: ...
    def stage(self, df: pl.DataFrame, like: str) -> None: ...
    def unstage(self) -> None: ...
    def close(self) -> None: ...


class _DuckDB:
    def __init__(self, path: Path, read_only: bool) -> None:
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            # Another process (a scoring run, the API acknowledging an alert) holds the
            # file for writing: a moment later it is free again, so callers may retry.
            raise OpsStoreUnavailable(
                f"ops store {path} is busy ({str(exc).splitlines()[0][:120]}); retry shortly"
            ) from exc

    def execute(self, sql: str, params: Sequence[object]) -> None:
        # DuckDB keeps a connection busy until a statement's result is fetched.
        self._con.execute(sql, list(params)).fetchall()

    def query(self, sql: str, params: Sequence[object]) -> pl.DataFrame:
        result = pl.from_arrow(self._con.sql(sql, params=list(params) or None).to_arrow_table())
        assert isinstance(result, pl.DataFrame)
        return result

    def stage(self, df: pl.DataFrame, like: str) -> None:
        self._con.register("incoming", df.to_arrow())

    def unstage(self) -> None:
        self._con.unregister("incoming")

    def close(self) -> None:
        self._con.close()


class _Postgres:
    def __init__(self, url: str) -> None:
        import psycopg

        try:
            self._con = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "refused"
            raise OpsStoreUnavailable(
                f"ops store {redact_url(url)} is unreachable ({first}); check ops_store_url "
                "and that the server is running"
            ) from exc

    def execute(self, sql: str, params: Sequence[object]) -> None:
        self._con.execute(_pg(sql), list(params))

    def query(self, sql: str, params: Sequence[object]) -> pl.DataFrame:
        cur = self._con.execute(_pg(sql), list(params))
        names = [c.name for c in cur.description or []]
        rows = cur.fetchall()
        if not rows:
            return pl.DataFrame({n: [] for n in names})
        return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)

    def stage(self, df: pl.DataFrame, like: str) -> None:
        self._con.execute(f"CREATE TEMP TABLE incoming (LIKE {like})")
        columns = ", ".join(df.columns)
        with self._con.cursor().copy(f"COPY incoming ({columns}) FROM STDIN") as copy:
            for row in df.iter_rows():
                copy.write_row(row)

    def unstage(self) -> None:
        self._con.execute("DROP TABLE IF EXISTS incoming")

    def close(self) -> None:
        self._con.close()


def _pg(sql: str) -> str:
    """DuckDB's `?` placeholders as psycopg's `%s` (no statement here contains a literal %)."""
    return sql.replace("?", "%s")


class OpsStoreUnavailable(CellpulseError, ConnectionError):
    """The ops store cannot be reached (a server down, a file locked by another writer)."""


def ops_store_location(settings: Settings) -> str:
    """Where the ops store is, fit to print (a password in the URL is masked)."""
    if settings.ops_store_url:
        return f"PostgreSQL {redact_url(settings.ops_store_url.get_secret_value())}"
    return f"DuckDB {settings.layout.ops_store}"


def open_ops_store(settings: Settings, read_only: bool = False) -> OpsStore:
    """The installation's ops store: PostgreSQL when `ops_store_url` is set, else the DuckDB
    file under the home. `read_only` is for readers (the API's GET routes): on DuckDB it lets
    them run beside a scoring run's writer."""
    if settings.ops_store_url:
        url = settings.ops_store_url.get_secret_value()
        return OpsStore(_Postgres(url), redact_url(url), read_only)
    path = settings.layout.ops_store
    if read_only and not path.exists():
        raise NoDataError(
            f"{path}: no ops store yet; run `cellpulse score` (or `cellpulse demo`) first"
        )
    return OpsStore(_DuckDB(path, read_only), str(path), read_only)


class OpsStore:
    def __init__(self, backend: _Backend, location: str, read_only: bool = False) -> None:
        self._db = backend
        self.location = location
        self.execute("SET TimeZone = 'UTC'")
        if not read_only:
            self.execute(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> OpsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self, staged: pl.DataFrame | None = None, like: str = "") -> Iterator[None]:
        """One transaction, committed if the block succeeds, rolled back otherwise; with
        `staged`, those rows are readable as `incoming` inside it."""
        if staged is not None:
            self._db.stage(staged, like)
        try:
            self.execute("BEGIN TRANSACTION")
            try:
                yield
                self.execute("COMMIT")
            except Exception:
                self.execute("ROLLBACK")
                raise
        finally:
            if staged is not None:
                self._db.unstage()

    def replace_scores(self, scores: pl.DataFrame, start: datetime, end: datetime) -> None:
        """Make `scores` the content of [start, end) in one transaction."""
        with self._transaction(scores, "scores"):
            self.execute("DELETE FROM scores WHERE ts >= ? AND ts < ?", [start, end])
            columns = ", ".join(scores.columns)
            self.execute(f"INSERT INTO scores ({columns}) SELECT {columns} FROM incoming")

    def upsert_alerts(self, alerts: pl.DataFrame) -> list[str]:
        """Insert new alerts; update the timing of known ones, keeping people's decisions.
        Returns the ids of the alerts that were new."""
        if alerts.is_empty():
            return []
        with self._transaction(alerts, "alerts"):
            new = self.query(
                "SELECT alert_id FROM incoming WHERE alert_id NOT IN "
                "(SELECT alert_id FROM alerts) ORDER BY alert_id"
            )["alert_id"].to_list()
            self._upsert_incoming_alerts()
        return [str(a) for a in new]

    def _upsert_incoming_alerts(self) -> None:
        self.execute("""
            INSERT INTO alerts (alert_id, cell_id, site_id, region, opened_at, last_anomalous_at,
                                closed_at, status, peak_score, kpis, anomalous_rops, model_version,
                                alert_type, severity)
            SELECT alert_id, cell_id, site_id, region, opened_at, last_anomalous_at, closed_at,
                   status, peak_score, kpis, anomalous_rops, model_version, alert_type, severity
            FROM incoming
            ON CONFLICT (alert_id) DO UPDATE SET
                last_anomalous_at = excluded.last_anomalous_at,
                closed_at = CASE WHEN alerts.status IN ('closed', 'false_alarm')
                                 AND alerts.acknowledged_by IS NOT NULL
                                 THEN alerts.closed_at ELSE excluded.closed_at END,
                status = CASE WHEN alerts.acknowledged_by IS NOT NULL
                              AND alerts.status IN ('closed', 'false_alarm') THEN alerts.status
                              WHEN alerts.status = 'acknowledged'
                              AND excluded.status = 'open' THEN alerts.status
                              ELSE excluded.status END,
                peak_score = excluded.peak_score, kpis = excluded.kpis,
                anomalous_rops = excluded.anomalous_rops, model_version = excluded.model_version,
                alert_type = excluded.alert_type, severity = excluded.severity
        """)

    def rank_cells(
        self,
        kind: str,
        start: datetime,
        end: datetime,
        limit: int,
        offset: int = 0,
        region: str | None = None,
        site_id: str | None = None,
        band: str | None = None,
    ) -> tuple[pl.DataFrame, int]:
        """Cells ranked over the ROPs of [start, end): by their worst anomaly score there
        (`kind` anomaly) or their peak congestion probability (congestion), with when each
        came, the window's anomalous ROPs, and the alert open on the cell; and how many
        cells match. An outage of the morning still ranks at night, when its cell is back."""
        rank = RANK_COLUMNS[kind]
        filters, params = _filters(region=region, site_id=site_id, band=band)
        base = f"""WITH w AS (SELECT * FROM scores WHERE ts >= ? AND ts < ? {filters}),
            worst AS (
                SELECT DISTINCT ON (cell_id) cell_id, ts AS worst_at, anomaly_score, anomaly_kpis
                FROM w ORDER BY cell_id, anomaly_score DESC NULLS LAST, ts DESC),
            peak AS (
                SELECT DISTINCT ON (cell_id) cell_id, ts AS peak_at, congestion_prob,
                       congestion_horizon
                FROM w ORDER BY cell_id, congestion_prob DESC NULLS LAST, ts DESC),
            latest AS (
                SELECT DISTINCT ON (cell_id) cell_id, ts, site_id, region, rat, band, is_anomaly
                FROM w ORDER BY cell_id, ts DESC),
            counted AS (
                SELECT cell_id, sum(CASE WHEN is_anomaly THEN 1 ELSE 0 END) AS anomalous_rops
                FROM w GROUP BY cell_id)"""
        args: list[object] = [start, end, *params]
        total = self.query(f"{base} SELECT count(*) AS n FROM latest", args)["n"][0]
        rows = self.query(
            f"""{base}
            SELECT l.cell_id, l.ts, l.site_id, l.region, l.rat, l.band, w.anomaly_score,
                   w.worst_at, l.is_anomaly, w.anomaly_kpis,
                   CAST(c.anomalous_rops AS INTEGER) AS anomalous_rops,
                   p.congestion_prob, p.peak_at, p.congestion_horizon,
                   a.alert_id, a.status AS alert_status, a.opened_at AS alert_opened_at,
                   a.alert_type, a.severity AS alert_severity
            FROM latest l
            JOIN worst w ON w.cell_id = l.cell_id
            JOIN peak p ON p.cell_id = l.cell_id
            JOIN counted c ON c.cell_id = l.cell_id
            LEFT JOIN (
                SELECT DISTINCT ON (cell_id) * FROM alerts
                WHERE status IN ('open', 'acknowledged') ORDER BY cell_id, opened_at DESC
            ) a ON a.cell_id = l.cell_id
            ORDER BY {"w" if kind == "anomaly" else "p"}.{rank} DESC NULLS LAST, l.cell_id
            LIMIT ? OFFSET ?""",
            [*args, limit, offset],
        )
        return rows, int(total)

    def newest_ts(self) -> datetime | None:
        """The newest ROP scored, or None for an empty store."""
        value = self.query("SELECT max(ts) AS ts FROM scores")["ts"][0]
        return None if value is None else value

    def cell_scores(self, cell_id: str, start: datetime, end: datetime) -> pl.DataFrame:
        return self.query(
            """SELECT ts, anomaly_score, is_anomaly, anomaly_kpis, congestion_prob,
                      anomaly_model_version, congestion_model_version
               FROM scores WHERE cell_id = ? AND ts >= ? AND ts < ? ORDER BY ts""",
            [cell_id, start, end],
        )

    def alerts(
        self,
        limit: int,
        offset: int = 0,
        status: str | None = None,
        region: str | None = None,
        cell_id: str | None = None,
        severity: str | None = None,
        alert_type: str | None = None,
    ) -> tuple[pl.DataFrame, int]:
        filters, params = _filters(
            status=status,
            region=region,
            cell_id=cell_id,
            severity=severity,
            alert_type=alert_type,
        )
        where = f"WHERE TRUE {filters}"
        total = self.query(f"SELECT count(*) AS n FROM alerts {where}", params)["n"][0]
        rows = self.query(
            f"""SELECT * FROM alerts {where}
                ORDER BY status = 'open' DESC, peak_score DESC NULLS LAST, alert_id
                LIMIT ? OFFSET ?""",
            [*params, limit, offset],
        )
        return rows, int(total)

    def queue_alerts(
        self,
        statuses: Sequence[str],
        cap: int,
        region: str | None = None,
        severity: str | None = None,
        alert_type: str | None = None,
    ) -> pl.DataFrame:
        """Alerts in any of `statuses` (the queue: open and acknowledged by default), at
        most `cap` of them, the oldest first."""
        filters, params = _filters(region=region, severity=severity, alert_type=alert_type)
        marks = ", ".join("?" for _ in statuses)
        return self.query(
            f"""SELECT * FROM alerts WHERE status IN ({marks}) {filters}
                ORDER BY opened_at, alert_id LIMIT ?""",
            [*statuses, *params, cap],
        )

    def cell_alerts(self, cell_id: str, start: datetime, end: datetime) -> pl.DataFrame:
        """A cell's alerts that overlap [start, end) (one not yet closed reaches to now),
        the newest first."""
        return self.query(
            """SELECT * FROM alerts WHERE cell_id = ? AND opened_at < ?
                   AND (closed_at IS NULL OR closed_at >= ?)
               ORDER BY opened_at DESC""",
            [cell_id, end, start],
        )

    def active_alert(self, cell_id: str) -> dict[str, object] | None:
        """A cell's newest open or acknowledged alert, if it has one."""
        rows = self.query(
            """SELECT * FROM alerts WHERE cell_id = ? AND status IN ('open', 'acknowledged')
               ORDER BY opened_at DESC LIMIT 1""",
            [cell_id],
        )
        return None if rows.is_empty() else rows.row(0, named=True)

    def alert(self, alert_id: str) -> dict[str, object]:
        rows = self.query("SELECT * FROM alerts WHERE alert_id = ?", [alert_id])
        if rows.is_empty():
            raise AlertNotFound(alert_id)
        return rows.row(0, named=True)

    def act_on_alert(
        self, alert_id: str, action: str, actor: str, comment: str | None, now: datetime
    ) -> dict[str, object]:
        """Move an alert through its lifecycle, recording who did it, when and why."""
        allowed, after = TRANSITIONS[action]
        with self._transaction():
            before = str(self.alert(alert_id)["status"])
            if before not in allowed:
                raise TransitionRefused(
                    f"alert {alert_id} is {before}; '{action}' applies to "
                    f"{' or '.join(sorted(allowed))} alerts"
                )
            self.execute(
                """UPDATE alerts SET status = ?, acknowledged_by = ?, acknowledged_at = ?,
                          comment = coalesce(?, comment),
                          closed_at = CASE WHEN ? IN ('closed', 'false_alarm') THEN ?
                                      ELSE closed_at END
                   WHERE alert_id = ?""",
                [after, actor, now, comment, after, now, alert_id],
            )
            self.execute(
                "INSERT INTO alert_actions VALUES (?, ?, ?, ?, ?, ?, ?)",
                [alert_id, action, before, after, actor, now, comment],
            )
        return self.alert(alert_id)

    def act_on_alerts(
        self, alert_ids: Sequence[str], action: str, actor: str, comment: str | None, now: datetime
    ) -> list[dict[str, object]]:
        """The same action on several alerts, each in its own transaction: one refused (no
        such alert, or a state the action does not apply to) leaves the others done. One
        result per alert: `ok`, its status after, and why not when refused."""
        results: list[dict[str, object]] = []
        for alert_id in alert_ids:
            try:
                after = self.act_on_alert(alert_id, action, actor, comment, now)
            except AlertNotFound:
                results.append(
                    {"alert_id": alert_id, "ok": False, "status": None, "detail": "no such alert"}
                )
            except TransitionRefused as exc:
                status = str(self.alert(alert_id)["status"])
                results.append(
                    {"alert_id": alert_id, "ok": False, "status": status, "detail": str(exc)}
                )
            else:
                results.append(
                    {"alert_id": alert_id, "ok": True, "status": after["status"], "detail": None}
                )
        return results

    def alert_history(self, alert_id: str) -> pl.DataFrame:
        return self.query(
            "SELECT * FROM alert_actions WHERE alert_id = ? ORDER BY acted_at", [alert_id]
        )

    def models_in_use(self) -> pl.DataFrame:
        """The model versions behind the stored scores, with the period each scored."""
        return self.query("""
            SELECT 'anomaly' AS kind, anomaly_model AS model, anomaly_model_version AS version,
                   anomaly_run_id AS run_id, min(ts) AS first_ts, max(ts) AS last_ts,
                   count(*) AS rows
            FROM scores GROUP BY anomaly_model, anomaly_model_version, anomaly_run_id
            UNION ALL
            SELECT 'congestion', congestion_model, congestion_model_version, congestion_run_id,
                   min(ts), max(ts), count(*)
            FROM scores GROUP BY congestion_model, congestion_model_version, congestion_run_id
            ORDER BY kind, last_ts DESC""")

    def feedback_labels(self) -> pl.DataFrame:
        """People's verdicts as labels (the shape of the simulator's ground truth): an
        acknowledged or closed-by-a-person alert is a true event, a false alarm is not."""
        return self.query("""
            SELECT cell_id, opened_at AS "start",
                   coalesce(closed_at, last_anomalous_at) AS "end",
                   CASE WHEN status = 'false_alarm' THEN 'false_alarm'
                        ELSE 'confirmed' END AS label,
                   alert_id, acknowledged_by AS decided_by, acknowledged_at AS decided_at,
                   comment
            FROM alerts WHERE acknowledged_by IS NOT NULL ORDER BY opened_at, cell_id""")

    def count(self, table: str) -> int:
        if table not in ("scores", "alerts"):
            raise ValueError(table)
        return int(self.query(f"SELECT count(*) AS n FROM {table}")["n"][0])

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        self._db.execute(sql, params)

    def query(self, sql: str, params: Sequence[object] = ()) -> pl.DataFrame:
        return self._db.query(sql, params)


def _filters(**equal: str | None) -> tuple[str, list[object]]:
    """`AND column = ?` for every given value; column names come from code, never from input."""
    given = {k: v for k, v in equal.items() if v is not None}
    return "".join(f" AND {k} = ?" for k in given), list(given.values())
