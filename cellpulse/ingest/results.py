"""What an ingest run tells its caller: per file, what became of it and why; per run, the
totals."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One broken rule, counted over a file, with a first example."""

    column: str
    rule: str
    rows: int
    example: str


@dataclass
class FileResult:
    """What became of one landing file, with every problem found in it."""

    path: Path
    status: str  # ingested | duplicate | rejected | skipped
    rows_in: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    reason: str | None = None
    problems: list[Problem] = field(default_factory=list)


@dataclass
class IngestSummary:
    """One ingest run: every file's result, what was written to the lake and where."""

    files: list[FileResult]
    partitions_written: int
    days: list[date]
    lake_dir: Path
    quarantine_dir: Path
    rows_replaced: int = 0  # stored rows that a later delivery of the same key replaced

    def count(self, status: str) -> int:
        """How many files ended with `status` (ingested, duplicate, rejected, skipped)."""
        return sum(1 for f in self.files if f.status == status)

    @property
    def rows_accepted(self) -> int:
        """Rows of every file that went to the lake."""
        return sum(f.rows_accepted for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        """Rows of every file kept apart in quarantine."""
        return sum(f.rows_quarantined for f in self.files)

    @property
    def rejected(self) -> list[FileResult]:
        """The files rejected whole, each with its reason."""
        return [f for f in self.files if f.status == "rejected"]
