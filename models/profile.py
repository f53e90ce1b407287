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

HOUR, WEEKEND = "_hour", "_weekend"
KEYS = ("cell_id", HOUR, WEEKEND)
POOLED = ("cell_id", HOUR)
MEAN, SPREAD = "__mean", "__spread"
_N, _S, _SS = "__n", "__sum", "__sumsq"
MIN_ROPS = 3  # a (cell, hour) seen fewer times has no spread worth dividing by
# Weekends carry other traffic than workdays: a cell's hour is profiled apart for the two
# where the window saw it at least this often on that kind of day, else pooled.
MIN_DAY_TYPE_ROPS = 8


def _keys_of() -> list[pl.Expr]:
    return [
        pl.col("ts").dt.hour().cast(pl.Int8).alias(HOUR),
        (pl.col("ts").dt.weekday() >= 6).alias(WEEKEND),
    ]


def hour_sums(rows: pl.DataFrame, kpis: Sequence[str], by: Sequence[str] = ()) -> pl.DataFrame:
    """Per (cell, UTC hour, kind of day) and any further columns `by`: count, sum and sum
    of squares of each of `kpis` that `rows` holds (nulls and NaN skipped) — the part of
    a profile that adds up across reads."""
    present = [k for k in kpis if k in rows.columns]
    value = {k: pl.col(k).cast(pl.Float64).fill_nan(None) for k in present}
    return (
        rows.select("cell_id", *_keys_of(), *by, *present)
        .group_by(*KEYS, *by)
        .agg(
            [value[k].count().cast(pl.Float64).alias(k + _N) for k in present]
            + [value[k].sum().alias(k + _S) for k in present]
            + [(value[k] ** 2).sum().alias(k + _SS) for k in present]
        )
    )


@dataclass(frozen=True)
class HourProfile:
    """Per (cell_id, `_hour`, `_weekend`) in `table` and per (cell_id, `_hour`) in `pooled`:
    `<kpi>__mean`, `<kpi>__spread` (Float32) and `<kpi>__n` (ROPs seen) of each KPI."""

    table: pl.DataFrame = field(default_factory=pl.DataFrame)
    pooled: pl.DataFrame = field(default_factory=pl.DataFrame)

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
        """The profile of several `hour_sums` (days or chunks of cells read apart), folded
        in one at a time: memory follows the network's cells × hours, not the parts."""
        summed: pl.DataFrame | None = None
        for part in parts:
            if not part.height:
                continue
            both = part if summed is None else pl.concat([summed, part], how="diagonal_relaxed")
            summed = both.group_by(*KEYS).agg(pl.all().sum())
        if summed is None:
            return cls()
        pooled = summed.drop(WEEKEND).group_by(*POOLED).agg(pl.all().sum())
        return cls(_moments(summed, KEYS), _moments(pooled, POOLED))

    @property
    def resolved(self) -> bool:
        """Whether each (cell, hour, kind of day) already holds the statistics it is
        judged by (`resolve`): no counts, no pooled table."""
        return not self.pooled.height

    def resolve(self) -> HourProfile:
        """The profile as scoring reads it: per (cell, hour, kind of day) the mean and
        spread it is judged by (its own, or the pooled hour's where the window saw too
        few), without the counts. A third of the size, for the model to carry; it can no
        longer be cross-fitted (`lookup_leaving_out`)."""
        if self.resolved:
            return self
        both = self.table.join(self.pooled, on=list(POOLED), how="left", suffix="_pooled")
        columns = []
        for k in self.kpis:
            apart = pl.col(k + _N).fill_null(0) >= MIN_DAY_TYPE_ROPS
            for part in (MEAN, SPREAD):
                own, pooled = pl.col(k + part), pl.col(k + part + "_pooled")
                columns.append(pl.when(apart).then(own).otherwise(pooled).alias(k + part))
        return HourProfile(both.select(*KEYS, *columns))

    def lookup(self, features: pl.DataFrame) -> pl.DataFrame:
        """Row for row of `features` (cell_id, ts): each KPI's `__mean` and `__spread` at
        the row's hour on that kind of day (pooled over both kinds where the window saw
        too few), null where the profile has no such cell or hour."""
        table = self.resolve().table
        keyed = features.select("cell_id", *_keys_of()).with_row_index("_row")
        found = keyed.join(table, on=list(KEYS), how="left").sort("_row")
        return found.select(c for c in table.columns if c.endswith((MEAN, SPREAD)))

    def lookup_leaving_out(self, rows: pl.DataFrame) -> pl.DataFrame:
        """As `lookup`, but each row of `rows` against the profile without its own
        cell-day's rows of `rows` (cross-fitted): what a day the profile never saw is
        judged against. A threshold calibrated on training rows then reads the scores of
        days like those it will judge, not in-sample ones that sit lower."""
        if self.resolved:
            raise ValueError("a resolved profile has no counts to leave a day out of")
        day = pl.col("ts").dt.date().alias("_day")
        own = hour_sums(rows.with_columns(day), self.kpis, by=("_day",))
        own = own.rename({c: "d" + c for c in own.columns if c.startswith(tuple(self.kpis))})
        keyed = rows.select("cell_id", *_keys_of(), day).with_row_index("_row")
        both = (
            keyed.join(own, on=[*KEYS, "_day"], how="left")
            .join(self.table, on=list(KEYS), how="left")
            .join(self.pooled, on=list(POOLED), how="left", suffix="_pooled")
            .sort("_row")
        )
        columns = []
        for k in self.kpis:
            day_n, day_s, day_ss = (pl.col("d" + k + part).fill_null(0.0) for part in (_N, _S, _SS))
            kinds = []  # (rest of the ROPs, mean, spread): on that kind of day, then pooled
            for suffix in ("", "_pooled"):
                n = pl.col(k + _N + suffix).cast(pl.Float64)
                mean = pl.col(k + MEAN + suffix).cast(pl.Float64)
                spread = pl.col(k + SPREAD + suffix).cast(pl.Float64).fill_null(0.0)
                # The sums back from the moments, less the row's own day.
                rest = (n - day_n, mean * n - day_s, spread**2 * (n - 1) + n * mean**2 - day_ss)
                kinds.append((rest[0], *_mean_spread(*rest)))
            apart = kinds[0][0].fill_null(0.0) >= MIN_DAY_TYPE_ROPS
            for i, part in enumerate((MEAN, SPREAD), start=1):
                chosen = pl.when(apart).then(kinds[0][i]).otherwise(kinds[1][i])
                columns.append(chosen.cast(pl.Float32).alias(k + part))
        return both.select(columns)


def _moments(summed: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Mean, spread and count of each KPI from its sums, per `keys`."""
    kpis = [c.removesuffix(_N) for c in summed.columns if c.endswith(_N)]
    columns: list[pl.Expr] = []
    for k in kpis:
        n = pl.col(k + _N)
        mean, spread = _mean_spread(n, pl.col(k + _S), pl.col(k + _SS))
        columns += [
            mean.cast(pl.Float32).alias(k + MEAN),
            spread.cast(pl.Float32).alias(k + SPREAD),
            n.cast(pl.Int32).alias(k + _N),
        ]
    return summed.select(*keys, *columns).sort(*keys)


def _mean_spread(n: pl.Expr, s: pl.Expr, ss: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """Mean (null without a value) and sample spread (null below MIN_ROPS values) from the
    count, sum and sum of squares; the variance never negative from rounding."""
    mean = s / n
    variance = ((ss - s * mean) / (n - 1)).clip(lower_bound=0.0)
    return pl.when(n > 0).then(mean), pl.when(n >= MIN_ROPS).then(variance.sqrt())
