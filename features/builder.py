"""The feature builder: one pure function from contract-shaped KPIs to a feature table.

Every feature at `ts` uses only rows with timestamp <= ts: rolling windows trail and include
ts, lags and hour-of-week baselines look strictly back in time, co-site features use the
site's other cells at ts itself. Windows are time-based, so a missing ROP shortens a window
instead of shifting it.

How: the KPI rows are scattered into a grid of cells × ROP slots (one block of slots per UTC
day the spec needs), every transform is a vectorised kernel over that grid
(`cellpulse.features.kernels`), and the rows that were reported are gathered back out.
Only the days that features of the output days read are put in the grid: for a day with a
three-week baseline that is the day, the day before and the same weekday 1, 2 and 3 weeks
earlier, not 22 days.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl

from cellpulse import contract
from cellpulse.features import kernels
from cellpulse.features.coverage import FeatureCoverage, feature_coverage
from cellpulse.features.spec import FeatureSpec, LevelChange, parse_duration

KEY_COLUMNS = ("cell_id", "ts", *contract.DIMENSIONS)
EPOCH_DAY = date(1970, 1, 1)
_US = 1_000_000

__all__ = [
    "EPOCH_DAY",
    "KEY_COLUMNS",
    "FeatureCoverage",
    "build_features",
    "build_rop_features",
    "days_needed",
    "feature_coverage",
    "slots",
    "spec_for_columns",
    "with_derived_kpis",
]


def with_derived_kpis(kpis: pl.DataFrame, min_denominator: int, rop_minutes: int) -> pl.DataFrame:
    """Contract KPIs plus the ones derived from their counters (KPI_CONTRACT.md); a derived
    KPI whose counters are not columns of `kpis` is not made."""
    return kpis.with_columns(contract.derived_kpis(min_denominator, rop_minutes, kpis.columns))


def spec_for_columns(spec: FeatureSpec, columns: list[str]) -> FeatureSpec:
    """`spec` restricted to the KPIs a frame with these columns holds (its contract
    measurements and what derives from them, and any other column the spec names)."""
    return spec.restricted_to({*contract.available_kpis(columns), *columns})


def slots(duration: str, rop_minutes: int, what: str) -> int:
    """A spec duration in ROP slots; it must be a whole number of ROPs."""
    seconds = parse_duration(duration).total_seconds()
    if seconds % (rop_minutes * 60):
        raise ValueError(f"{what} {duration!r} is not a whole number of {rop_minutes}-minute ROPs")
    return int(seconds // (rop_minutes * 60))


def days_needed(spec: FeatureSpec, out_days: list[date], rop_minutes: int) -> list[date]:
    """The UTC days whose KPIs the features of `out_days` read: each day, the days its
    trailing windows reach into, and the days its lags land on."""
    reach = math.ceil(spec.window_lookback() / timedelta(days=1))
    lags = {parse_duration(lag) for _, lag in spec.all_lags()}
    needed: set[date] = set()
    # A level change reads its window twice: at the day, and `vs` earlier.
    shifted = {(parse_duration(c.vs), parse_duration(c.window)) for c in spec.changes}
    for day in out_days:
        needed |= {day - timedelta(days=k) for k in range(reach + 1)}
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        for lag in lags:
            first = midnight - lag
            last = first + timedelta(days=1) - timedelta(minutes=rop_minutes)
            needed |= {first.date(), last.date()}
        for vs, window in shifted:
            # From the first output ROP's window start to the last output ROP, `vs` earlier.
            first = midnight - vs - window
            last = midnight - vs + timedelta(days=1) - timedelta(minutes=rop_minutes)
            needed |= {(first + timedelta(days=k)).date() for k in range((last - first).days + 1)}
    return sorted(needed)


@dataclass(frozen=True)
class _Grid:
    """Where every kept input row sits: `row_of[cell, column]` is its row number or -1."""

    row_of: np.ndarray  # (cells, columns) int64
    day_lut: np.ndarray  # epoch day - first_day -> block number, or -1
    first_day: int  # epoch day of day_lut[0]
    block_days: np.ndarray  # epoch day of each block
    per_day: int  # slots per day
    out_columns: np.ndarray  # grid columns of the output days' slots
    present: np.ndarray  # (cells, len(out_columns)) bool: a row was reported there
    out_rows: np.ndarray  # input row numbers of the output, in (cell_id, ts) order
    complete: bool  # every output slot of every cell was reported
    in_grid_order: bool  # the input rows are exactly the grid, cell by cell, slot by slot

    def column_of(self, epoch_day: np.ndarray, slot: np.ndarray) -> np.ndarray:
        """Grid columns of (epoch day, slot-of-day) pairs; -1 where that day is not in it."""
        index = epoch_day - self.first_day
        inside = (index >= 0) & (index < self.day_lut.size)
        block = np.where(inside, self.day_lut[np.clip(index, 0, self.day_lut.size - 1)], -1)
        return np.where(block >= 0, block * self.per_day + slot, -1)

    def lagged_columns(self, lag_slots: int) -> np.ndarray:
        """For each output column, the grid column `lag_slots` earlier (-1 if not in it)."""
        absolute = self.absolute(self.out_columns) - lag_slots
        return self.column_of(absolute // self.per_day, absolute % self.per_day)

    def absolute(self, columns: np.ndarray) -> np.ndarray:
        """Absolute slot numbers (ROPs since the epoch) of grid columns."""
        return self.block_days[columns // self.per_day] * self.per_day + columns % self.per_day


def build_features(
    kpis: pl.DataFrame,
    spec: FeatureSpec,
    *,
    rop_minutes: int,
    min_denominator: int,
    timezone: str = "UTC",
    since: datetime | None = None,
) -> pl.DataFrame:
    """Features for every (cell_id, ts) of `kpis` with ts >= `since` (default: all), keys and
    dimensions first, sorted by (cell_id, ts).

    Rows near the start of `kpis` lack history and get nulls where a window or lag reaches
    before it; callers pass the spec's lookback in front of the period they keep.

    `kpis` may hold any subset of the contract's measurements: features are made for the
    KPIs it holds (`spec_for_columns`), none for the others, so the table's columns are
    those of the restricted spec (`feature_coverage` says what was left out). A measurement
    that is a column of nulls is built (and reported all-null by `feature_coverage`); pass
    a spec restricted to what the source delivers (`spec.restricted_to`) to leave it out.

    Args:
        kpis: Contract-shaped rows, one per (cell_id, ts), ts on ROP boundaries.
        spec: The features to build.
        rop_minutes: The ROP length; windows and lags are whole numbers of ROPs.
        min_denominator: A derived ratio KPI is null where its denominator is below this.
        timezone: The network's zone, for the calendar columns.
        since: The first ts kept; its whole UTC day is built, earlier days only read.
    """
    spec = spec_for_columns(spec, kpis.columns)
    if kpis.height == 0:
        return _empty(spec)
    per_day = 24 * 60 // rop_minutes
    absolute = _rop_numbers(kpis, rop_minutes)
    epoch_day = absolute // per_day
    first_reported = int(epoch_day.min())
    # Whole UTC days are built from `since`'s day on; rows before `since` are dropped last.
    first_out = first_reported if since is None else int(since.timestamp()) // (86_400)
    out_days = [
        EPOCH_DAY + timedelta(days=int(d)) for d in np.unique(epoch_day[epoch_day >= first_out])
    ]
    if not out_days:
        return _empty(spec)
    needed, day_lut = _grid_days(spec, out_days, first_reported, rop_minutes)
    keep = _in_grid_days(epoch_day, needed, day_lut)
    frame = kpis.filter(pl.Series(keep)) if not keep.all() else kpis
    frame = with_derived_kpis(frame, min_denominator, rop_minutes)
    grid = _place(frame, absolute[keep], needed, day_lut, per_day, first_out)
    built = _compute_features(frame, spec, grid, rop_minutes)
    table = _feature_table(frame, spec, grid, built, timezone, rop_minutes)
    return table if since is None else table.filter(pl.col("ts") >= since)


def rops_needed(spec: FeatureSpec, out_rops: np.ndarray, rop_minutes: int) -> np.ndarray:
    """The ROP numbers whose KPIs the features of the ROPs `out_rops` (sorted ROP numbers
    since the epoch) read: the trailing windows' reach before the first of them, through
    the last, every ROP a lag lands on, and each level change's window `vs` earlier. A
    bounded read, whatever the hour of the day."""
    rop = timedelta(minutes=rop_minutes)
    reach = math.ceil(spec.window_lookback() / rop)
    lags = {int(parse_duration(lag) / rop) for _, lag in spec.all_lags()}
    window = np.arange(int(out_rops[0]) - reach, int(out_rops[-1]) + 1)
    lagged = [out_rops - lag for lag in sorted(lags)]
    # A level change reads its trailing window twice: at the ROP, and `vs` earlier.
    shifted = [
        window[window > int(out_rops[0]) - int(parse_duration(c.window) / rop)]
        - int(parse_duration(c.vs) / rop)
        for c in spec.changes
    ]
    return np.unique(np.concatenate([window, *lagged, *shifted]))


def build_rop_features(
    kpis: pl.DataFrame,
    spec: FeatureSpec,
    *,
    rop_minutes: int,
    min_denominator: int,
    timezone: str = "UTC",
    since: datetime,
) -> pl.DataFrame:
    """Features for the rows of `kpis` with ts >= `since` only, as `build_features` makes
    them, bit for bit: the grid holds one block per ROP that `rops_needed` names (not whole
    days), so the cost follows the ROPs built, not the hour of the day. `kpis` needs the
    rows of those ROPs (others are ignored)."""
    spec = spec_for_columns(spec, kpis.columns)
    absolute = _rop_numbers(kpis, rop_minutes) if kpis.height else np.empty(0, np.int64)
    first_out = int(since.timestamp()) // (rop_minutes * 60)
    out_rops = np.unique(absolute[absolute >= first_out])
    if out_rops.size == 0:
        return _empty(spec)
    needed = rops_needed(spec, out_rops, rop_minutes)
    lut = np.full(int(needed[-1] - needed[0]) + 1, -1)
    lut[needed - needed[0]] = np.arange(needed.size)
    keep = _in_grid_days(absolute, needed, lut)
    frame = kpis.filter(pl.Series(keep)) if not keep.all() else kpis
    frame = with_derived_kpis(frame, min_denominator, rop_minutes)
    grid = _place(frame, absolute[keep], needed, lut, 1, first_out)
    reach = math.ceil(spec.window_lookback() / timedelta(minutes=rop_minutes))
    first = int(grid.column_of(np.array([int(out_rops[0]) - reach]), np.array([0]))[0])
    window = _Window(first, int(needed[first]), grid.out_columns - first)
    built = _compute_features(frame, spec, grid, rop_minutes, window)
    return _feature_table(frame, spec, grid, built, timezone, rop_minutes)


def _rop_numbers(kpis: pl.DataFrame, rop_minutes: int) -> np.ndarray:
    """Each row's ROP number since the epoch; ValueError naming the first `ts` that is not
    on a ROP boundary."""
    rop_us = rop_minutes * 60 * _US
    epoch_us = kpis["ts"].dt.epoch("us").to_numpy()
    unaligned = np.flatnonzero(epoch_us % rop_us)
    if unaligned.size:
        raise ValueError(
            f"ts {kpis['ts'][int(unaligned[0])]} is not aligned to the {rop_minutes}-minute ROP"
        )
    return epoch_us // rop_us


def _grid_days(
    spec: FeatureSpec, out_days: list[date], first_reported: int, rop_minutes: int
) -> tuple[np.ndarray, np.ndarray]:
    """The epoch days the grid holds, one block of slots each (`days_needed` by the output
    days), and a lookup from epoch day minus the first of them to its block (-1: none)."""
    needed = np.array([(d - EPOCH_DAY).days for d in days_needed(spec, out_days, rop_minutes)])
    # Days before the first reported one would only be empty blocks: leave them out.
    needed = needed[needed >= first_reported]
    day_lut = np.full(int(needed[-1] - needed[0]) + 1, -1)
    day_lut[needed - needed[0]] = np.arange(needed.size)
    return needed, day_lut


def _in_grid_days(epoch_day: np.ndarray, needed: np.ndarray, day_lut: np.ndarray) -> np.ndarray:
    """Which rows fall on a day the grid holds (the others no feature reads)."""
    index = epoch_day - needed[0]
    inside = (index >= 0) & (index < day_lut.size)
    return inside & (day_lut[np.clip(index, 0, day_lut.size - 1)] >= 0)


def _compute_features(
    frame: pl.DataFrame,
    spec: FeatureSpec,
    grid: _Grid,
    rop_minutes: int,
    window: _Window | None = None,
) -> dict[str, pl.Series]:
    """Every feature column of `spec` at the output rows, by name: the KPIs' features
    computed in parallel threads (the kernels release the GIL), then the missing counts.
    `window`: where trailing windows start (default: `reach` whole days before the first
    output day, the day grid's)."""
    window = window or _window(spec, grid)
    sites = _site_codes(frame, grid) if spec.cosite else None  # shared by every co-site KPI

    def features_of(kpi: str) -> list[pl.Series]:
        # Into polars as soon as a KPI is done, so its NumPy arrays are freed early.
        arrays = _kpi_features(frame, kpi, spec, grid, window, sites, rop_minutes)
        return _to_series(arrays, grid)

    with ThreadPoolExecutor(max_workers=_threads()) as pool:
        parts = list(pool.map(features_of, spec.kpis_used()))
    parts.append(_to_series(_missing_counts(spec, grid, window, rop_minutes), grid))
    return {s.name: s for part in parts for s in part}


def _feature_table(
    frame: pl.DataFrame,
    spec: FeatureSpec,
    grid: _Grid,
    built: dict[str, pl.Series],
    timezone: str,
    rop_minutes: int,
) -> pl.DataFrame:
    """Keys and dimensions of the output rows, the calendar, then the built features, in
    the spec's column order."""
    keys = frame.select(KEY_COLUMNS)
    if not (grid.out_rows.size == frame.height and np.all(grid.out_rows[1:] > grid.out_rows[:-1])):
        keys = keys[grid.out_rows]
    columns = [*keys.get_columns()]
    if spec.calendar:
        columns += _calendar(keys["ts"], timezone, spec.holidays, rop_minutes).get_columns()
    columns += [built[name] for name in spec.columns() if name in built]
    return pl.DataFrame(columns).select(*KEY_COLUMNS, *spec.columns())


def _to_series(arrays: dict[str, np.ndarray], grid: _Grid) -> list[pl.Series]:
    """Feature arrays (cells × output slots) as columns of the reported rows; NaN -> null.

    Computed in float64, stored as float32: seven significant digits are more than any KPI
    carries, LightGBM bins them the same, and a national day halves in memory and on disk."""
    out = []
    for name in list(arrays):
        values = arrays.pop(name)
        if name.startswith("rops_missing_"):
            flat = values.ravel() if grid.complete else values[grid.present]
            out.append(pl.Series(name, flat.astype(np.int32)))
        else:
            flat = (
                values.ravel().astype(np.float32, copy=False)
                if grid.complete
                else kernels.compact_float32(values, grid.present, grid.out_rows.size)
            )
            out.append(pl.Series(name, flat, nan_to_null=True))
        del values, flat
    return out


def _threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _place(
    frame: pl.DataFrame,
    absolute: np.ndarray,
    needed: np.ndarray,
    day_lut: np.ndarray,
    per_day: int,
    first_out: int,
) -> _Grid:
    cells = frame["cell_id"].unique().sort()
    code = frame["cell_id"].cast(pl.Enum(cells)).to_physical().to_numpy().astype(np.int64)
    epoch_day = absolute // per_day
    column = day_lut[epoch_day - needed[0]] * per_day + absolute % per_day
    n_columns = needed.size * per_day
    flat = code * n_columns + column
    flat_rows = np.full(cells.len() * n_columns, -1, dtype=np.int64)
    flat_rows[flat] = np.arange(flat.size)
    row_of = flat_rows.reshape(cells.len(), n_columns)
    if np.count_nonzero(row_of >= 0) != flat.size:
        raise ValueError("KPIs hold duplicated (cell_id, ts) keys; read them through the lake")
    out_blocks = np.flatnonzero(needed >= first_out)
    out_blocks = out_blocks[np.isin(needed[out_blocks], np.unique(epoch_day))]
    out_columns = (out_blocks[:, None] * per_day + np.arange(per_day)).ravel()
    rows_out = np.ascontiguousarray(row_of[:, out_columns])  # row-major, as kernels walk it
    present = rows_out >= 0
    complete = bool(present.all())
    return _Grid(
        row_of=row_of,
        day_lut=day_lut,
        first_day=int(needed[0]),
        block_days=needed,
        per_day=per_day,
        out_columns=out_columns,
        present=present,
        out_rows=rows_out.ravel() if complete else rows_out[present],
        complete=complete,
        in_grid_order=flat.size == row_of.size and bool(np.all(flat[1:] > flat[:-1])),
    )


def _values(frame: pl.DataFrame, kpi: str, grid: _Grid) -> np.ndarray:
    """The KPI as a cells × columns grid, NaN where nothing (or a null) was reported."""
    values = frame[kpi].cast(pl.Float64).to_numpy()
    rows = grid.row_of
    if grid.in_grid_order:
        return values.reshape(rows.shape)
    return kernels.scatter(values, rows)


def _kpi_features(
    frame: pl.DataFrame,
    kpi: str,
    spec: FeatureSpec,
    grid: _Grid,
    window: _Window,
    sites: np.ndarray | None,
    rop_minutes: int,
) -> dict[str, np.ndarray]:
    """Every feature of one KPI, each a cells × output-slots array."""
    values = _values(frame, kpi, grid)
    out: dict[str, np.ndarray] = {}
    current = kernels.take_columns(values, grid.out_columns)
    if kpi in spec.kpis:
        out[kpi] = current
    window_values = values[:, window.first :]
    for r in spec.rolling:
        if r.kpi == kpi:
            width = slots(r.window, rop_minutes, f"rolling window of {kpi}")
            stats = kernels.rolling_stats(
                window_values, window.first_slot, width, window.local, r.stats, np.float32
            )
            out |= dict(zip(r.columns(), stats.values(), strict=True))
    lagged = _Lagged(values, grid, rop_minutes)
    for lag in spec.lags:
        if lag.kpi == kpi:
            out[lag.column()] = lagged(lag.lag)
    for d in spec.deltas:
        if d.kpi == kpi:
            out[d.column()] = current - lagged(d.vs)
    for b in spec.baselines:
        if b.kpi == kpi:
            median, z = kernels.robust_z(current, [lagged(lag) for lag in b.lags()])
            out |= dict(zip(b.columns(), (median, z), strict=True))
    for s in spec.stuck:
        if s.kpi == kpi:
            cap = slots(s.max_window, rop_minutes, f"stuck-run window of {kpi}") - 1
            out[s.column()] = kernels.repeat_run(window_values, window.local, cap)
    for c in spec.cosite:
        if c.kpi == kpi:
            assert sites is not None
            out |= dict(zip(c.columns(), kernels.cosite(sites, current, c.stats), strict=True))
    for change in spec.changes:
        if change.kpi == kpi:
            out[change.column()] = _level_change(values, grid, window, change, rop_minutes)
    return out


def _level_change(
    values: np.ndarray, grid: _Grid, window: _Window, change: LevelChange, rop_minutes: int
) -> np.ndarray:
    """`LevelChange` at the output slots: trailing sums of the KPI now and `vs` earlier,
    over the slots reported both times, as sum now / sum then - 1 (NaN where then is 0)."""
    width = slots(change.window, rop_minutes, f"level-change window of {change.kpi}")
    lag = slots(change.vs, rop_minutes, f"level-change lag of {change.kpi}")
    columns = np.arange(window.first, values.shape[1])
    earlier = grid.absolute(columns) - lag
    past = grid.column_of(earlier // grid.per_day, earlier % grid.per_day)
    return kernels.level_change(values, window.first, past, window.first_slot, width, window.local)


@dataclass(frozen=True)
class _Window:
    """The part of the grid trailing windows read: its first column, that column's absolute
    slot, and the output columns relative to it. It starts `reach` days before the first
    output day, which `days_needed` put in the grid, so it is contiguous in time where
    windows look."""

    first: int
    first_slot: int
    local: np.ndarray


def _window(spec: FeatureSpec, grid: _Grid) -> _Window:
    reach = math.ceil(spec.window_lookback() / timedelta(days=1))
    first_day = grid.block_days[grid.out_columns[0] // grid.per_day] - reach
    first = int(grid.column_of(np.array([first_day]), np.array([0]))[0])
    first = max(first, 0)  # the grid starts later than the reach: begin where it begins
    first_slot = int(grid.absolute(np.array([first]))[0])
    return _Window(first, first_slot, grid.out_columns - first)


class _Lagged:
    """Lagged copies of one KPI at the output slots, each computed once."""

    def __init__(self, values: np.ndarray, grid: _Grid, rop_minutes: int) -> None:
        self.values, self.grid, self.rop_minutes = values, grid, rop_minutes
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, lag: str) -> np.ndarray:
        if lag not in self.cache:
            source = self.grid.lagged_columns(slots(lag, self.rop_minutes, "lag"))
            self.cache[lag] = kernels.take_columns(self.values, source)
        return self.cache[lag]


def _site_codes(frame: pl.DataFrame, grid: _Grid) -> np.ndarray:
    """Each grid row's (cell's) site as an integer code."""
    site = frame["site_id"].cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    rows = grid.row_of
    any_row = rows.max(axis=1)  # every cell has at least one row
    return np.unique(site[any_row], return_inverse=True)[1]


def _missing_counts(
    spec: FeatureSpec, grid: _Grid, window: _Window, rop_minutes: int
) -> dict[str, np.ndarray]:
    if not spec.missing_windows:
        return {}
    # A reported row is a 0, an unreported slot NaN: the window's count is what was reported.
    reported = np.where(grid.row_of[:, window.first :] >= 0, 0.0, np.nan)
    out = {}
    for span in spec.missing_windows:
        width = slots(span, rop_minutes, "missing-data window")
        present = kernels.rolling_stats(
            reported, window.first_slot, width, window.local, ("count",)
        )["count"]
        out[f"rops_missing_{span}"] = np.maximum(width - present, 0)
    return out


def _calendar(
    ts: pl.Series, timezone: str, holidays: tuple[str, ...], rop_minutes: int
) -> pl.DataFrame:
    """Calendar columns of `ts` (ROP-aligned): computed once per distinct ROP, then gathered,
    as a day of 100,000 cells holds only 96 distinct timestamps."""
    if ts.len() == 0:
        return _calendar_of(ts, timezone, holidays)
    rop_us = rop_minutes * 60 * _US
    epoch = ts.dt.epoch("us").to_numpy()
    first = int(epoch.min())
    slot = (epoch - first) // rop_us
    distinct = pl.Series(
        "ts", first + np.arange(int(slot.max()) + 1) * rop_us, dtype=pl.Int64
    ).cast(pl.Datetime("us", "UTC"))
    return _calendar_of(distinct, timezone, holidays)[slot]


def _calendar_of(ts: pl.Series, timezone: str, holidays: tuple[str, ...]) -> pl.DataFrame:
    local = ts.dt.convert_time_zone(timezone)
    weekday = local.dt.weekday()  # Monday = 1
    return pl.DataFrame(
        {
            "hour": local.dt.hour(),
            "day_of_week": weekday - 1,
            # Int16: weekday and hour are Int8, and 6 * 24 + 23 does not fit in one.
            "hour_of_week": (weekday.cast(pl.Int16) - 1) * 24 + local.dt.hour(),
            "is_weekend": weekday >= 6,
            "is_holiday": local.dt.date().is_in([date.fromisoformat(d) for d in holidays]),
        }
    )


_CALENDAR_TYPES = {
    "hour": pl.Int8,
    "day_of_week": pl.Int8,
    "hour_of_week": pl.Int16,
    "is_weekend": pl.Boolean,
    "is_holiday": pl.Boolean,
}


def _empty(spec: FeatureSpec) -> pl.DataFrame:
    """The feature table's shape with no rows."""
    keys: dict[str, pl.DataType | type[pl.DataType]] = {k: pl.String for k in KEY_COLUMNS}
    keys["ts"] = pl.Datetime("us", "UTC")
    features: dict[str, pl.DataType | type[pl.DataType]] = {
        c: _CALENDAR_TYPES.get(c, pl.Int32 if c.startswith("rops_missing_") else pl.Float32)
        for c in spec.columns()
    }
    return pl.DataFrame(schema=keys | features)
