"""Vectorised NumPy kernels over a grid of cells × ROP slots.

A KPI lives in a 2-D float array, one row per cell and one column per ROP slot, NaN where
the cell reported nothing (or a null). Every kernel only looks back in time, and sums are
taken in an order fixed by absolute time (not by where a grid happens to start), so a day
built on its own equals, bit for bit, the same day built inside a longer range.
"""

from __future__ import annotations

import numba
import numpy as np

from cellpulse.features.spec import COSITE_STATS

STATS = ("mean", "std", "min", "max", "sum", "count")


def rolling_stats(
    grid: np.ndarray,
    first_slot: int,
    width: int,
    positions: np.ndarray,
    stats: tuple[str, ...],
    dtype: type = np.float64,
) -> dict[str, np.ndarray]:
    """mean/std (sample, ddof 1)/min/max/sum/count of the non-missing values in the trailing
    `width` slots ending at each of `positions` (grid columns), per row: each array has shape
    (rows, len(positions)); NaN where the window holds no value (std: fewer than two).

    `first_slot` is the absolute slot number (ROPs since the epoch) of grid column 0.
    Computed in float64 and stored as `dtype`.
    """
    unknown = [s for s in stats if s not in STATS]
    if unknown:
        raise ValueError(f"unknown rolling statistics {unknown}; use {STATS}")
    wanted = [s for s in STATS if s in stats]
    plane = np.array([wanted.index(s) if s in wanted else -1 for s in STATS])
    out: np.ndarray = np.empty((len(wanted), grid.shape[0], positions.size), dtype=dtype)
    values = grid if grid.dtype == np.float64 else grid.astype(np.float64)
    _rolling(values, first_slot % width, width, positions.astype(np.int64), plane, out)
    return {s: out[wanted.index(s)] for s in stats}


@numba.njit(nogil=True, cache=True)
def _rolling(grid, pad, width, positions, plane, out):
    """van Herk/Gil-Werman, one row at a time: cut time into blocks of `width` slots aligned
    to absolute slot 0, keep each block's running prefix and suffix; a window is one block's
    prefix, or the suffix of one block plus the prefix of the next. Linear in the grid
    whatever the width, and the sums at a slot are taken over the slots of its window only,
    in an order fixed by absolute time: a day built alone equals the same day built inside
    a longer range, bit for bit.

    Only the blocks the windows at `positions` touch are scanned (a 1 h window of one output
    day reads that day, not the whole lookback), and only the planes of wanted statistics
    (`plane[k]` >= 0) are written."""
    rows = grid.shape[0]
    n = positions.size
    if n == 0 or rows == 0:
        return
    first_block = max(positions.min() + pad - width + 1, 0) // width
    last_block = (positions.max() + pad) // width
    start = first_block * width
    span = (last_block + 1) * width - start
    extremes = plane[2] >= 0 or plane[3] >= 0
    # running count, sum, sum of squares, min, max: block prefixes (p) and suffixes (q)
    p = np.empty((span, 5))
    q = np.empty((span, 5))
    for r in range(rows):
        row = grid[r]
        for block in range(first_block, last_block + 1):
            base = block * width
            _run_block(row, base - pad, base - start, width, extremes, p, 1)
            _run_block(row, base - pad, base - start, width, extremes, q, -1)
        for i in range(n):
            e = positions[i] + pad
            b = e - width + 1
            at = e - start
            if b <= 0 or b % width == 0:
                c, s1, s2, lo, hi = p[at, 0], p[at, 1], p[at, 2], p[at, 3], p[at, 4]
            else:
                bt = b - start
                c, s1, s2 = q[bt, 0] + p[at, 0], q[bt, 1] + p[at, 1], q[bt, 2] + p[at, 2]
                lo, hi = q[bt, 3], q[bt, 4]
                if not lo <= p[at, 3]:
                    lo = p[at, 3] if p[at, 3] == p[at, 3] else lo
                if not hi >= p[at, 4]:
                    hi = p[at, 4] if p[at, 4] == p[at, 4] else hi
            mean = s1 / c if c > 0 else np.nan
            if plane[0] >= 0:
                out[plane[0], r, i] = mean
            if plane[1] >= 0:
                if c > 1:
                    # Sums of squares lose the exact zero of a constant window to rounding.
                    var = (s2 - s1 * mean) / (c - 1)
                    out[plane[1], r, i] = np.sqrt(var) if var > 0 else 0.0
                else:
                    out[plane[1], r, i] = np.nan
            if plane[2] >= 0:
                out[plane[2], r, i] = lo
            if plane[3] >= 0:
                out[plane[3], r, i] = hi
            if plane[4] >= 0:
                out[plane[4], r, i] = s1 if c > 0 else np.nan
            if plane[5] >= 0:
                out[plane[5], r, i] = c


@numba.njit(nogil=True, cache=True, inline="always")
def _run_block(row, first, into, width, extremes, out, direction):
    """The running count, sum, sum of squares, min and max of the non-missing values of one
    block (`width` slots from row index `first`, which may lie outside the row: missing),
    from its start (direction 1) or its end (-1), stored from column `into` of `out`."""
    c, s1, s2, lo, hi = 0.0, 0.0, 0.0, np.nan, np.nan
    length = row.size
    for step in range(width):
        k = step if direction > 0 else width - 1 - step
        x = first + k
        v = row[x] if 0 <= x < length else np.nan
        if v == v:
            c += 1.0
            s1 += v
            s2 += v * v
            if extremes:
                lo = v if not lo <= v else lo
                hi = v if not hi >= v else hi
        j = into + k
        out[j, 0], out[j, 1], out[j, 2], out[j, 3], out[j, 4] = c, s1, s2, lo, hi


def repeat_run(grid: np.ndarray, positions: np.ndarray, cap: int) -> np.ndarray:
    """How many slots in a row before each position held exactly the position's value,
    capped at `cap` (0 when the value changed, or either value is missing)."""
    rows, length = grid.shape
    same = np.zeros((rows, length), dtype=bool)
    np.equal(grid[:, 1:], grid[:, :-1], out=same[:, 1:])
    index = np.arange(length)
    last_change = np.maximum.accumulate(np.where(same, 0, index), axis=1)
    run = index[positions] - last_change[:, positions]
    return np.minimum(run, cap).astype(np.float64)


def robust_z(current: np.ndarray, past: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(median of `past` (one to four arrays), `current`'s robust z-score against it). The
    spread is 1.4826 × the median absolute deviation, floored at 5% of the median's size so
    that a KPI that barely moved in the past weeks does not give z-scores in the thousands.

    The past arrays are read where they lie (views included): stacking them first would
    allocate and touch a copy of all of them (bench/RESULTS.md)."""
    if not 1 <= len(past) <= 4:
        raise ValueError("robust_z takes one to four past arrays")
    shaped = [np.atleast_2d(np.asarray(p, dtype=np.float64)) for p in past]
    median, z = _median_z(  # type: ignore[call-arg]
        *_four(shaped), len(shaped), np.atleast_2d(current).astype(np.float64, copy=False)
    )
    return median.reshape(np.shape(current)), z.reshape(np.shape(current))


def _four(arrays: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Pad to four arguments (the kernel reads only the first k)."""
    return (*arrays, *([arrays[0]] * (4 - len(arrays))))


@numba.njit(nogil=True, cache=True)
def _median_z(p0, p1, p2, p3, k, current):
    """Per element of the first k past arrays (2-D, same shape as `current`): the median of
    its non-missing values and `current`'s robust z against it. Closed forms, values in
    registers: with at most four values the median is what remains after dropping the
    smallest and the largest."""
    rows, cols = current.shape
    median = np.empty((rows, cols))
    z = np.empty((rows, cols))
    for r in range(rows):
        for c in range(cols):
            m = 0
            total, lo, hi = 0.0, np.inf, -np.inf
            a0 = a1 = a2 = a3 = 0.0
            for j in range(k):
                v = p0[r, c] if j == 0 else p1[r, c] if j == 1 else p2[r, c] if j == 2 else p3[r, c]
                if v == v:
                    if m == 0:
                        a0 = v
                    elif m == 1:
                        a1 = v
                    elif m == 2:
                        a2 = v
                    else:
                        a3 = v
                    m += 1
                    total += v
                    lo = min(lo, v)
                    hi = max(hi, v)
            if m == 0:
                median[r, c] = np.nan
                z[r, c] = np.nan
                continue
            med = _middle(m, a0, a1, total, lo, hi)
            d0, d1, d2, d3 = abs(a0 - med), abs(a1 - med), abs(a2 - med), abs(a3 - med)
            if m == 3:
                d_lo, d_hi = min(d0, min(d1, d2)), max(d0, max(d1, d2))
                d_total = d0 + d1 + d2
            else:
                d_lo, d_hi = min(min(d0, d1), min(d2, d3)), max(max(d0, d1), max(d2, d3))
                d_total = d0 + d1 + d2 + d3
            spread = max(1.4826 * _middle(m, d0, d1, d_total, d_lo, d_hi), 0.05 * abs(med))
            median[r, c] = med
            z[r, c] = (current[r, c] - med) / spread if spread > 0 else np.nan
    return median, z


@numba.njit(nogil=True, cache=True, inline="always")
def _middle(m, first, second, total, lo, hi):
    """The median of m (1 to 4) values given the first two, their sum, min and max."""
    if m == 1:
        return first
    if m == 2:
        return 0.5 * (first + second)
    inner = total - lo - hi
    return inner if m == 3 else 0.5 * inner


def take_columns(grid: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """grid[:, columns] with NaN where a column is -1, copied run by run: the columns asked
    for are a few contiguous runs (whole days), so slices beat a general gather. A single
    run comes back as a read-only view of `grid`."""
    missing = columns < 0
    step = np.diff(columns)
    breaks = np.flatnonzero((step != 1) | missing[1:] | missing[:-1]) + 1
    if breaks.size == 0 and not missing[0]:
        # One contiguous run: a view, no copy, read-only so that nobody writes through it.
        view = grid[:, columns[0] : columns[0] + columns.size]
        view.flags.writeable = False
        return view
    out = np.empty((grid.shape[0], columns.size))
    for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, columns.size], strict=True):
        if missing[lo]:
            out[:, lo:hi] = np.nan
        else:
            out[:, lo:hi] = grid[:, columns[lo] : columns[lo] + hi - lo]
    return out


@numba.njit(nogil=True, cache=True)
def scatter(values, row_of):
    """A cells × slots grid of `values`: `values[row_of[c, j]]`, NaN where row_of is -1."""
    cells, columns = row_of.shape
    out = np.empty((cells, columns))
    for c in range(cells):
        for j in range(columns):
            r = row_of[c, j]
            out[c, j] = values[r] if r >= 0 else np.nan
    return out


@numba.njit(nogil=True, cache=True)
def compact_float32(values, present, count):
    """`values[present]` (row-major order, `count` of them) as float32, in one pass over
    arrays of any layout."""
    out = np.empty(count, dtype=np.float32)
    rows, columns = present.shape
    k = 0
    for r in range(rows):
        for c in range(columns):
            if present[r, c]:
                out[k] = values[r, c]
                k += 1
    return out


def cosite(
    site_of_cell: np.ndarray, current: np.ndarray, stats: tuple[str, ...]
) -> list[np.ndarray]:
    """Co-site context of each cell (row) and slot, one array per name in `stats`:
    `share` of the site's total, the `site_mean`, the mean of the site's other cells
    (`siblings_mean`) and the cell's deviation from it (`sibling_dev`). Missing values count
    for nothing; NaN where a stat has nothing to stand on."""
    wanted = np.array([name in stats for name in COSITE_STATS])
    sites = np.ascontiguousarray(site_of_cell, dtype=np.int64)
    n_sites = int(sites.max()) + 1 if sites.size else 0
    total, count = _site_totals(sites, n_sites, current)
    out = _cosite_stats(sites, current, total, count, wanted)
    return [out[COSITE_STATS.index(name)] for name in stats]


@numba.njit(nogil=True, cache=True)
def _site_totals(sites, n_sites, current):
    rows, cols = current.shape
    total = np.zeros((n_sites, cols))
    count = np.zeros((n_sites, cols))
    for r in range(rows):
        s = sites[r]
        for c in range(cols):
            v = current[r, c]
            if v == v:
                total[s, c] += v
                count[s, c] += 1.0
    return total, count


@numba.njit(nogil=True, cache=True)
def _cosite_stats(sites, current, total, count, wanted):
    # One pass, only the wanted planes written (np.empty leaves the others untouched).
    # Planes in COSITE_STATS order: share, site_mean, siblings_mean, sibling_dev.
    rows, cols = current.shape
    out = np.empty((4, rows, cols))
    nan = np.nan
    for r in range(rows):
        s = sites[r]
        for c in range(cols):
            v, t, n = current[r, c], total[s, c], count[s, c]
            valid = v == v
            others = n - 1.0 if valid else n
            siblings = ((t - v) if valid else t) / others if others > 0 else nan
            if wanted[0]:
                out[0, r, c] = v / t if t > 0 else nan
            if wanted[1]:
                out[1, r, c] = t / n if n > 0 else nan
            if wanted[2]:
                out[2, r, c] = siblings
            if wanted[3]:
                out[3, r, c] = v - siblings
    return out


def level_change(
    grid: np.ndarray,
    first: int,
    earlier: np.ndarray,
    first_slot: int,
    width: int,
    positions: np.ndarray,
) -> np.ndarray:
    """sum now / sum then - 1 over the trailing `width` slots ending at each of `positions`
    (columns of the window that starts at grid column `first`, whose column 0 is absolute
    slot `first_slot`), the sums over the slots with a finite value both now and then
    (`earlier[k]`: the grid column the window's column k is compared with, -1 if none);
    NaN where then sums to 0 or less, or no slot has both. Per row: (rows, positions).

    What `rolling_stats`' "sum" gives for the two masked series, bit for bit (the same
    blocks, the same order of additions), in one pass with no masked copies of the grid."""
    out = np.empty((grid.shape[0], positions.size))
    values = grid if grid.dtype == np.float64 else grid.astype(np.float64)
    _level_change(
        values, first, earlier.astype(np.int64), first_slot % width, width,
        positions.astype(np.int64), out,
    )  # fmt: skip
    return out


@numba.njit(nogil=True, cache=True)
def _level_change(grid, first, earlier, pad, width, positions, out):
    """`_rolling`'s blocks and combination of a block's suffix with the next one's prefix,
    for the running count and the sums now and then of the slots both hold."""
    rows = grid.shape[0]
    n = positions.size
    if n == 0 or rows == 0:
        return
    length = earlier.size
    first_block = max(positions.min() + pad - width + 1, 0) // width
    last_block = (positions.max() + pad) // width
    start = first_block * width
    span = (last_block + 1) * width - start
    p = np.empty((span, 3))  # block prefixes: count, sum now, sum then
    q = np.empty((span, 3))  # block suffixes
    for r in range(rows):
        row = grid[r]
        for block in range(first_block, last_block + 1):
            base = block * width
            for direction in (1, -1):
                acc = p if direction > 0 else q
                c, now_sum, then_sum = 0.0, 0.0, 0.0
                for step in range(width):
                    k = step if direction > 0 else width - 1 - step
                    x = base - pad + k
                    if 0 <= x < length and earlier[x] >= 0:
                        now, then = row[first + x], row[earlier[x]]
                        if np.isfinite(now) and np.isfinite(then):
                            c += 1.0
                            now_sum += now
                            then_sum += then
                    j = base - start + k
                    acc[j, 0], acc[j, 1], acc[j, 2] = c, now_sum, then_sum
        for i in range(n):
            e = positions[i] + pad
            b = e - width + 1
            at = e - start
            if b <= 0 or b % width == 0:
                c, now_sum, then_sum = p[at, 0], p[at, 1], p[at, 2]
            else:
                bt = b - start
                c = q[bt, 0] + p[at, 0]
                now_sum = q[bt, 1] + p[at, 1]
                then_sum = q[bt, 2] + p[at, 2]
            out[r, i] = now_sum / then_sum - 1.0 if c > 0 and then_sum > 0 else np.nan
