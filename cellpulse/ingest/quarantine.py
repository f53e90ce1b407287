"""What a person reads about a file's problems: a report per file, and its bad rows, under
the quarantine folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import polars as pl

from cellpulse import echo, failpoints, lake
from cellpulse.ingest.landing import below_landing
from cellpulse.ingest.results import FileResult
from cellpulse.layout import Layout


def format_report(source: Path, result: FileResult) -> str:
    """A quarantine report a person can read. What the file decides (its name, columns and
    values) is shown escaped and cut, so it cannot add lines to the report."""
    lines = [
        f"cellpulse ingest report for {echo.shown(source)}",
        f"status: {result.status}",
        f"rows read: {result.rows_in}, accepted: {result.rows_accepted}, "
        f"quarantined: {result.rows_quarantined}",
    ]
    if result.reason:
        lines.append(f"reason: {echo.shown(result.reason)}")
    if result.problems:
        lines.append("")
        lines.append("problems (column | rule | rows | first example):")
        lines += [
            f"  {echo.shown(p.column)} | {p.rule} | {p.rows} | {echo.shown(p.example)}"
            for p in result.problems
        ]
    return "\n".join(lines) + "\n"


def write_quarantine(layout: Layout, result: FileResult, bad: pl.DataFrame | None) -> None:
    """The file's report (and its bad rows) under quarantine/, at the file's path below the
    landing folder, so same-named files from different folders keep their own reports."""
    base = _quarantine_base(layout.quarantine / below_landing(result.path, layout))
    lake.atomic_write_bytes(
        base.with_name(f"{base.name}.report.txt"), format_report(result.path, result).encode()
    )
    failpoints.hit("ingest.quarantine_report_written")
    if bad is not None and bad.height:
        lake.atomic_write_parquet(bad, base.with_name(f"{base.name}.rows.parquet"))


# Bytes of a landing file's name kept in the names of its report and rows: the rest of a
# folder entry's 255 goes to their suffixes and the writer's hidden temporary name.
QUARANTINE_NAME_MAX = 160


def _quarantine_base(base: Path) -> Path:
    """`base`, its name cut (and told apart from other cut names by a hash of the whole
    name) where it is too long to name a report: a long but legal landing name must not
    stop the run."""
    raw = os.fsencode(base.name)
    if len(raw) <= QUARANTINE_NAME_MAX:
        return base
    digest = hashlib.sha256(raw).hexdigest()[:12]
    return base.with_name(f"{os.fsdecode(raw[: QUARANTINE_NAME_MAX - 13])}-{digest}")
