"""The ingest ledger: which input files were seen (by content hash) and what became of them,
and which days need their features and scores rebuilt. SQLite, so each update is atomic."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    sha256 TEXT NOT NULL,
    path TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    status TEXT NOT NULL,            -- ingested | duplicate | rejected
    rows_in INTEGER NOT NULL,
    rows_accepted INTEGER NOT NULL,
    rows_quarantined INTEGER NOT NULL,
    reason TEXT,
    recorded_at TEXT NOT NULL,
    reading TEXT NOT NULL DEFAULT '',  -- fingerprint of the mapping read through ('' none)
    PRIMARY KEY (sha256, path)
);
CREATE TABLE IF NOT EXISTS stale_days (
    stage TEXT NOT NULL,             -- features | scores
    day TEXT NOT NULL,
    marked_at TEXT NOT NULL,
    PRIMARY KEY (stage, day)
);
"""

STAGES = ("features", "scores")


@dataclass(frozen=True)
class FileRecord:
    """One landing file as the ledger keeps it: its content hash and path, what became of it
    (ingested, duplicate or rejected) and its row counts."""

    sha256: str
    path: str
    size_bytes: int
    status: str
    rows_in: int
    rows_accepted: int
    rows_quarantined: int
    reason: str | None = None
    # How the file was read: the fingerprint of its source mapping ('' for contract-shaped
    # parquet). The same content read through a changed mapping is a new delivery.
    reading: str = ""


class Ledger:
    """The ledger of one home (`Layout.ledger`), opened as a context manager."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(files)")}
        if "reading" not in columns:  # a ledger written before mappings were fingerprinted
            with self._db:
                self._db.execute("ALTER TABLE files ADD COLUMN reading TEXT NOT NULL DEFAULT ''")

    def close(self) -> None:
        """Close the database; every update is already committed."""
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def seen(self, sha256: str, reading: str = "") -> str | None:
        """Status of the first file recorded with this content read this way (`reading`: a
        mapping's fingerprint, '' for none), or None if it is new."""
        row = self._db.execute(
            "SELECT status FROM files WHERE sha256 = ? AND reading = ? AND status != 'duplicate' "
            "LIMIT 1",
            (sha256, reading),
        ).fetchone()
        return row[0] if row else None

    def has(self, sha256: str, path: str, reading: str = "") -> bool:
        """Whether this very file (this content at this path, read this way) was recorded
        before."""
        row = self._db.execute(
            "SELECT 1 FROM files WHERE sha256 = ? AND path = ? AND reading = ?",
            (sha256, path, reading),
        ).fetchone()
        return row is not None

    def record(self, records: Iterable[FileRecord], stale_days: Iterable[date] = ()) -> None:
        """Record files and mark days stale, in one transaction."""
        now = datetime.now(UTC).isoformat()
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO files (sha256, path, size_bytes, status, rows_in, "
                "rows_accepted, rows_quarantined, reason, recorded_at, reading) "
                "VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        r.sha256,
                        r.path,
                        r.size_bytes,
                        r.status,
                        r.rows_in,
                        r.rows_accepted,
                        r.rows_quarantined,
                        r.reason,
                        now,
                        r.reading,
                    )
                    for r in records
                ],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO stale_days VALUES (?,?,?)",
                [(stage, d.isoformat(), now) for d in stale_days for stage in STAGES],
            )

    def mark_stale(self, stage: str, days: Iterable[date]) -> None:
        """Mark days whose `stage` output (features or scores) needs rebuilding."""
        now = datetime.now(UTC).isoformat()
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO stale_days VALUES (?,?,?)",
                [(stage, d.isoformat(), now) for d in days],
            )

    def stale(self, stage: str) -> list[date]:
        """The days whose `stage` output needs rebuilding, oldest first."""
        rows = self._db.execute("SELECT day FROM stale_days WHERE stage = ? ORDER BY day", (stage,))
        return [date.fromisoformat(r[0]) for r in rows]

    def clear_stale(self, stage: str, days: Iterable[date]) -> None:
        """Mark days of `stage` rebuilt."""
        with self._db:
            self._db.executemany(
                "DELETE FROM stale_days WHERE stage = ? AND day = ?",
                [(stage, d.isoformat()) for d in days],
            )

    def files(self) -> list[FileRecord]:
        """Every recorded file, in the order they were recorded."""
        rows = self._db.execute(
            "SELECT sha256, path, size_bytes, status, rows_in, rows_accepted, rows_quarantined, "
            "reason, reading FROM files ORDER BY recorded_at, path"
        )
        return [FileRecord(*r) for r in rows]
