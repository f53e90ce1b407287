"""What a feature table holds of its spec: the columns built, those left out for KPIs the
data did not hold, and those without a single value."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from cellpulse.features.spec import FeatureSpec


@dataclass(frozen=True)
class FeatureCoverage:
    """What a feature table holds of its spec: the columns built, the KPIs the data did not
    hold and the columns left out for them, and the built columns without a single value
    (a KPI present but never reported)."""

    columns: int  # feature columns built (keys and dimensions excluded)
    absent_kpis: tuple[str, ...]
    left_out: tuple[str, ...]
    all_null: tuple[str, ...]
    all_null_kpis: tuple[str, ...]  # KPIs every built column of which is all-null

    def merged(self, other: FeatureCoverage) -> FeatureCoverage:
        """Coverage of two parts of one table (chunks, regions, days of one spec): a column
        is all-null only if it is in both."""
        both = set(other.all_null)
        return FeatureCoverage(
            self.columns,
            tuple(k for k in self.absent_kpis if k in other.absent_kpis),
            tuple(c for c in self.left_out if c in other.left_out),
            tuple(c for c in self.all_null if c in both),
            tuple(k for k in self.all_null_kpis if k in other.all_null_kpis),
        )

    def line(self) -> str:
        """One line for a flow's summary."""
        text = f"features: {self.columns} columns"
        if self.absent_kpis:
            text += (
                f"; left out for absent KPIs ({', '.join(self.absent_kpis)}): "
                f"{len(self.left_out)} columns"
            )
        if self.all_null:
            kpis = f" (all of {', '.join(self.all_null_kpis)})" if self.all_null_kpis else ""
            text += f"; all-null: {len(self.all_null)} columns{kpis}"
        return text


def feature_coverage(features: pl.DataFrame, spec: FeatureSpec) -> FeatureCoverage:
    """How much of `spec` a feature table (`build_features`' output) holds."""
    built = [c for c in spec.columns() if c in features.columns]
    by_kpi = spec.columns_by_kpi()
    absent = tuple(k for k, cols in by_kpi.items() if not any(c in features.columns for c in cols))
    left_out = tuple(c for c in spec.columns() if c not in features.columns)
    nulls = features.select(built).null_count().row(0, named=True) if built else {}
    empty = {c for c, n in nulls.items() if n == features.height and features.height}
    null_kpis = tuple(
        k for k, cols in by_kpi.items() if k not in absent and all(c in empty for c in cols)
    )
    return FeatureCoverage(
        len(built), absent, left_out, tuple(c for c in built if c in empty), null_kpis
    )
