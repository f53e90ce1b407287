"""A sample file checked through a mapping without ingesting it (`cellpulse mapping check`):
its mapped rows, every problem, and the KPI coverage it would give."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from cellpulse.ingest.coverage import Coverage
from cellpulse.ingest.reading import conform, read_mapped
from cellpulse.ingest.results import Problem
from cellpulse.ingest.rules import RuleLimits
from cellpulse.ingest.validation import validate_rows
from cellpulse.mapping import Mapping

if TYPE_CHECKING:
    from cellpulse.settings import Settings


@dataclass(frozen=True)
class SampleCheck:
    """What ingesting the sample would do: its mapped rows (contract columns), the valid
    and the refused ones, every problem once, and the coverage of the valid rows."""

    rows: pl.DataFrame
    good: pl.DataFrame
    bad: pl.DataFrame
    problems: list[Problem]
    coverage: Coverage


def check_sample(
    path: Path, settings: Settings, mapping: Mapping | None, now: datetime | None = None
) -> SampleCheck:
    """Read, map, conform and validate one sample file as ingest would (raises
    ContractError or MappingError when the file cannot be read at all)."""
    mapped = read_mapped(path, mapping, settings.rop_minutes)
    conformed, problems = conform(mapped.rows, str(path))
    good, bad, row_problems = validate_rows(
        conformed, RuleLimits.of(settings), now or datetime.now(UTC)
    )
    notes = [Problem(n.column, n.rule, n.rows, n.example) for n in mapped.notes]
    shown = conformed.select(c for c in conformed.columns if not c.startswith("_"))
    return SampleCheck(shown, good, bad, notes + problems + row_problems, Coverage.of_rows(good))
