"""What an ingest run tells its caller: per file, what became of it and why; per run, the
totals."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from cellpulse.ingest.coverage import Coverage


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
    # KPI coverage of the rows this run wrote (see cellpulse.ingest.coverage).
    coverage: Coverage = field(default_factory=lambda: Coverage.of_counts({}, 0))

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

    @property
    def rows_read(self) -> int:
        """Rows of the files read in this run (not of files skipped as seen before)."""
        return sum(f.rows_in for f in self.files)

    @property
    def all_refused(self) -> bool:
        """Whether rows were read and every one of them was refused: the run delivered
        nothing, which the caller should treat as a failure."""
        return self.rows_read > 0 and self.rows_accepted == 0

    def top_reasons(self, n: int = 3) -> list[tuple[str, int]]:
        """The rules that refused the most rows over every file ("column: rule", rows)."""
        counts: Counter[str] = Counter()
        for f in self.files:
            for p in f.problems:
                if p.rows:
                    counts[f"{p.column}: {p.rule}"] += p.rows
        return counts.most_common(n)

    def refused_line(self) -> str:
        """One line saying that every row was refused, and the top reasons."""
        reasons = "; ".join(f"{r} ({n:,} rows)" for r, n in self.top_reasons())
        return (
            f"every one of the {self.rows_read:,} rows read was refused"
            + (f": {reasons}" if reasons else "")
            + f"; see the reports in {self.quarantine_dir}"
        )
