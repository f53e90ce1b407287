"""KPI coverage: which contract measurements a source delivers, and how completely. Ingest
and `mapping check` report it, so that a source with only a few KPIs is seen as such before
features and models run on it."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from cellpulse import contract

# A measurement holding a value in fewer of the rows than this is "mostly null": delivered,
# but too sparse to be relied on.
MOSTLY_NULL_BELOW = 0.5


@dataclass(frozen=True)
class Coverage:
    """Per contract measurement, the share of rows holding a value, over `rows` rows."""

    shares: dict[str, float]
    rows: int

    @classmethod
    def of_counts(cls, values: dict[str, int], rows: int) -> Coverage:
        """Coverage from how many of `rows` rows hold each measurement."""
        return cls(
            {m: (values.get(m, 0) / rows if rows else 0.0) for m in contract.MEASUREMENT_NAMES},
            rows,
        )

    @classmethod
    def of_rows(cls, rows: pl.DataFrame) -> Coverage:
        """Coverage of contract-shaped rows."""
        return cls(contract.kpi_coverage(rows), rows.height)

    @property
    def present(self) -> list[str]:
        """Measurements holding a value in at least MOSTLY_NULL_BELOW of the rows."""
        return [m for m, s in self.shares.items() if s >= MOSTLY_NULL_BELOW]

    @property
    def mostly_null(self) -> list[str]:
        """Measurements holding a value in some rows, but fewer than MOSTLY_NULL_BELOW."""
        return [m for m, s in self.shares.items() if 0 < s < MOSTLY_NULL_BELOW]

    @property
    def absent(self) -> list[str]:
        """Measurements without a single value."""
        return [m for m, s in self.shares.items() if s == 0]

    def line(self) -> str:
        """One line for a person: what is present, mostly null and absent."""
        if not self.rows:
            return "KPI coverage: no rows"
        sparse = ", ".join(f"{m} {self.shares[m]:.0%}" for m in self.mostly_null)
        parts = [f"{len(self.present)} present ({', '.join(self.present) or '-'})"]
        if self.mostly_null:
            parts.append(f"{len(self.mostly_null)} mostly null ({sparse})")
        parts.append(f"{len(self.absent)} absent")
        return f"KPI coverage of {self.rows:,} rows: " + "; ".join(parts)
