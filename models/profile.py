"""A cell's hour-of-day profile: per cell, UTC hour and KPI, the mean and spread of the KPI
on the training window.

Judged against its own profile, a cell's KPI carries evidence that accumulates: a level
shift, a slow degradation or a sleeping cell stays below the profile for as long as it
lasts, where an expectation built from the day-old value follows the fault after a day.
The mean of every ROP at that hour over the window is also a far steadier expectation
than any single lagged value, and the spread is the cell's own at that hour (a busy hour
is judged against busy hours). On the many-world quality benchmark this is what finds
level shifts and slow degradations at a low false-alarm rate (bench/RESULTS.md).

The profile is built from sums (count, sum, sum of squares), so it can be accumulated
over a window read day by day or in chunks of cells and combined (`HourProfile.merge`).
UTC hours: a cell's local hour is a fixed shift of them, so each (cell, hour) group is the
same set of ROPs either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import polars as pl

HOUR = "_hour"
KEYS = ("cell_id", HOUR)
MEAN, SPREAD = "__mean", "__spread"
_N, _S, _SS = "__n", "__sum", "__sumsq"
MIN_ROPS = 3  # a (cell, hour) seen fewer times has no spread worth dividing by


def _hour_of(frame: pl.DataFrame) -> pl.Expr:
    return pl.col("ts").dt.hour().cast(pl.Int8).alias(HOUR)


def hour_sums(rows: pl.DataFrame, kpis: Sequence[str]) -> pl.DataFrame:
    """Per (cell, UTC hour): count, sum and sum of squares of each of `kpis` that `rows`
    holds (nulls and NaN skipped) — the part of a profile that adds up across reads."""
    present = [k for k in kpis if k in rows.columns]
    value = {k: pl.col(k).cast(pl.Float64).fill_nan(None) for k in present}
    return (
        rows.select("cell_id", _hour_of(rows), *present)
        .group_by(*KEYS)
        .agg(
            [value[k].count().cast(pl.Float64).alias(k + _N) for k in present]
            + [value[k].sum().alias(k + _S) for k in present]
            + [(value[k] ** 2).sum().alias(k + _SS) for k in present]
        )
    )


@dataclass(frozen=True)
class HourProfile:
    """Per (cell_id, `_hour`): `<kpi>__mean` and `<kpi>__spread` (Float32) of each KPI."""

    table: pl.DataFrame = field(default_factory=pl.DataFrame)

    @property
    def kpis(self) -> tuple[str, ...]:
        return tuple(c.removesuffix(MEAN) for c in self.table.columns if c.endswith(MEAN))

    @property
    def cells(self) -> int:
        return self.table["cell_id"].n_unique() if self.table.height else 0

    @classmethod
    def learn(cls, rows: pl.DataFrame, kpis: Sequence[str]) -> HourProfile:
        """The profile of `rows` (cell_id, ts and the KPIs)."""
        return cls.from_sums([hour_sums(rows, kpis)])

    @classmethod
    def from_sums(cls, parts: Iterable[pl.DataFrame]) -> HourProfile:
        """The profile of several `hour_sums` (days or chunks of cells read apart)."""
        frames = [p for p in parts if p.height]
        if not frames:
            return cls()
        summed = pl.concat(frames, how="diagonal_relaxed").group_by(*KEYS).agg(pl.all().sum())
        kpis = [c.removesuffix(_N) for c in summed.columns if c.endswith(_N)]
        columns: list[pl.Expr] = []
        for k in kpis:
            n, s, ss = pl.col(k + _N), pl.col(k + _S), pl.col(k + _SS)
            mean = s / n
            # Sample variance from the sums; never negative from rounding.
            variance = ((ss - s * mean) / (n - 1)).clip(lower_bound=0.0)
            enough = n >= MIN_ROPS
            columns += [
                pl.when(n > 0).then(mean).cast(pl.Float32).alias(k + MEAN),
                pl.when(enough).then(variance.sqrt()).cast(pl.Float32).alias(k + SPREAD),
            ]
        return cls(summed.select(*KEYS, *columns).sort(*KEYS))

    def lookup(self, features: pl.DataFrame) -> pl.DataFrame:
        """Row for row of `features` (cell_id, ts): the profile's columns, null where the
        profile has no such cell or hour."""
        keyed = features.select("cell_id", _hour_of(features)).with_row_index("_row")
        return keyed.join(self.table, on=list(KEYS), how="left").sort("_row").drop("_row", *KEYS)
