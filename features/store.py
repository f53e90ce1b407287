"""Feature partitions in the lake: build a date range from lake/kpi, write lake/features.

Each day is built from that day plus the spec's lookback and written atomically with the
spec's hash in its metadata, so a re-run replaces a day and a model can check what it reads.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from cellpulse import contract, lake
from cellpulse.errors import NoDataError, SpecMismatchError
from cellpulse.features.builder import (
    EPOCH_DAY,
    FeatureCoverage,
    build_features,
    build_rop_features,
    days_needed,
    feature_coverage,
    rops_needed,
)
from cellpulse.features.spec import FeatureParams, FeatureSpec, spec_for
from cellpulse.layout import Layout
from cellpulse.ledger import Ledger
from cellpulse.settings import TrainSettings
from cellpulse.window import DayWindow

SPEC_HASH_KEY = "cellpulse.feature_spec_hash"


@dataclass(frozen=True)
class FeatureSummary:
    """What a feature build wrote: the days, their size, the spec, and where."""

    days: list[date]
    rows: int
    cells: int
    columns: int
    spec_hash: str
    out_dir: Path
    reused: int = 0  # days whose inputs were unchanged: their cached build was kept
    # What the features hold of the full spec: KPIs the lake lacks, all-null columns.
    coverage: FeatureCoverage | None = None


def ingested_days(layout: Layout, window: DayWindow) -> list[date]:
    """The days of `window` that have ingested KPIs: what features, training and backfills
    cover. NoDataError saying what the lake holds when there are none."""
    return window.resolve(layout.kpi.dates(), fix=f"run `cellpulse ingest` ({layout.kpi.root})")


def lake_kpis(layout: Layout) -> tuple[str, ...]:
    """The KPIs the lake delivers: the contract measurements holding a value in at least one
    row of lake/kpi, and the KPIs derived from them. One answer for the whole lake, so the
    features, training and scoring of any window build and expect the same spec.

    Parquet parts answer from their column statistics (null counts), without reading data;
    only delivery fragments without statistics are read, and only until every measurement
    was seen."""
    missing = set(contract.MEASUREMENT_NAMES)
    for f in layout.kpi.files():
        if not missing:
            break
        missing -= _measurements_in(f, missing)
    return contract.available_kpis(set(contract.MEASUREMENT_NAMES) - missing)


def _measurements_in(path: Path, wanted: set[str]) -> set[str]:
    """Which of `wanted` hold a value in the lake file `path`."""
    if path.suffix == ".parquet":
        meta = pq.ParquetFile(path).metadata
        names = meta.schema.names
        found, unknown = set(), set()
        for name in wanted & set(names):
            j = names.index(name)
            for g in range(meta.num_row_groups):
                col = meta.row_group(g).column(j)
                stats = col.statistics
                if stats is None or not stats.has_null_count:
                    unknown.add(name)
                    break
                if stats.null_count < meta.row_group(g).num_rows:
                    found.add(name)
                    break
        if not unknown:
            return found
        wanted = unknown
    rows = lake.scan([path])
    present = [c for c in wanted if c in rows.collect_schema().names()]
    if not present:
        return set()
    held = rows.select(pl.col(c).is_not_null().any() for c in present).collect().row(0)
    return {c for c, has in zip(present, held, strict=True) if has}


def lake_spec(layout: Layout, params: FeatureParams) -> FeatureSpec:
    """The spec features are built, trained and scored with: the installation's, restricted
    to the KPIs the lake delivers (`lake_kpis`)."""
    return spec_for(params, lake_kpis(layout))


def affected_days(changed: list[date], spec: FeatureSpec, available: list[date]) -> list[date]:
    """Days whose features read a changed day: the day itself and every later day whose
    lookback reaches it (a corrected Monday changes Tuesday's lag_1d, next Monday's lag_7d)."""
    reach = math.ceil(spec.lookback() / timedelta(days=1))
    return sorted({d for d in available for c in changed if c <= d <= c + timedelta(days=reach)})


@dataclass(frozen=True)
class DayBuild:
    """One day's build: its rows, cells and columns."""

    day: date
    rows: int
    cells: frozenset[str]
    columns: int
    coverage: FeatureCoverage | None = None  # against the installation's full spec


def build_day(layout: Layout, spec: FeatureSpec, day: date, params: FeatureParams) -> DayBuild:
    """Build and store one day's features, region by region and, within a region, in chunks
    of whole sites (`params.chunk_cells` cells), each from those cells' rows of the days the
    spec reads (`days_needed`). Touches only that day's partition, so days can be built in
    parallel (on Dask workers too); memory follows the chunk, not the network."""
    kpis = layout.kpi
    needed = days_needed(spec, [day], params.rop_minutes)
    since = datetime.combine(day, time(), tzinfo=UTC)
    rows, cells, width = 0, set[str](), 0
    full = spec_for(params)
    coverage: FeatureCoverage | None = None

    def chunks(region: str) -> Iterator[pl.DataFrame]:
        nonlocal rows, width, coverage
        sites = kpis.read_days([day], region, columns=["cell_id", "site_id"]).unique()
        for lo, hi in site_chunks(sites, params.chunk_cells):
            feats = build_features(
                kpis.read_days(needed, region, cells=(lo, hi)),
                spec,
                rop_minutes=params.rop_minutes,
                min_denominator=params.min_denominator,
                timezone=params.timezone,
                since=since,
            )
            rows, width = rows + feats.height, feats.width
            cells.update(feats["cell_id"].unique().to_list())
            part = feature_coverage(feats, full)
            coverage = part if coverage is None else coverage.merged(part)
            yield feats

    layout.features.replace_day_parts(
        ((region, chunks(region)) for region in kpis.regions(day)),
        day,
        {SPEC_HASH_KEY: spec.hash()},
    )
    return DayBuild(day, rows, frozenset(cells), width, coverage)


def build_rops(
    layout: Layout, spec: FeatureSpec, since: datetime, params: FeatureParams
) -> pl.DataFrame:
    """The features of every KPI row with ts >= `since` (the ROPs a delivery just brought),
    sorted by (cell_id, ts) within each region, equal to what `build_day` stores for them.

    Reads only the ROPs those features need (`rops_needed`: the trailing windows' reach,
    the ROPs the lags land on, each level change's window a week earlier), region by
    region and, within a region, in chunks of whole sites (`params.chunk_cells` cells of
    the new ROPs), as `build_day` does: the cost follows the ROPs and the network, not the
    hour of the day, and memory follows the chunk. Nothing is written: the day's
    partitions are built whole by `build_day` once the day is in. An empty frame when the
    lake holds no row from `since` on."""
    new = new_rops(layout, since, params.rop_minutes)
    if new.size == 0:
        return pl.DataFrame()
    rop_s = params.rop_minutes * 60
    needed = rops_needed(spec, new, params.rop_minutes)
    days = sorted({EPOCH_DAY + timedelta(days=int(r * rop_s // 86_400)) for r in new})
    regions = sorted({r for d in days for r in layout.kpi.regions(d)})
    parts = []
    for region in regions:
        sites = read_rops(layout.kpi, new, rop_s, region, columns=["cell_id", "site_id"])
        for cells in site_chunks(sites.select("cell_id", "site_id").unique(), params.chunk_cells):
            rows = read_rops(layout.kpi, needed, rop_s, region, cells=cells)
            if rows.is_empty():
                continue
            parts.append(
                build_rop_features(
                    rows,
                    spec,
                    rop_minutes=params.rop_minutes,
                    min_denominator=params.min_denominator,
                    timezone=params.timezone,
                    since=since,
                )
            )
            del rows
    return pl.concat(parts) if parts else pl.DataFrame()


def new_rops(layout: Layout, since: datetime, rop_minutes: int) -> np.ndarray:
    """The ROP numbers (since the epoch) lake/kpi holds rows of from `since` on: only the
    ts column of the days from `since`'s on is read."""
    files = layout.kpi.files(since.date())
    if not files:
        return np.empty(0, dtype=np.int64)
    ts = lake.scan(files).select(pl.col("ts").unique()).filter(pl.col("ts") >= since).collect()
    return np.sort(ts["ts"].dt.epoch("s").to_numpy() // (rop_minutes * 60))


def read_rops(
    kpis: lake.Dataset,
    rops: np.ndarray,
    rop_s: int,
    region: str,
    columns: list[str] | None = None,
    cells: tuple[str, str] | None = None,
) -> pl.DataFrame:
    """One region's KPI rows at the ROP numbers `rops` (only `columns`, if given; only
    cells with `cells[0] <= cell_id <= cells[1]`, if given), deliveries applied: each file
    read with the ROPs filtered as it is scanned, so a day the lags land on costs its ROPs,
    not the day. Keys are only de-duplicated (the latest delivery winning) where two files
    of a day overlap in time: deliveries of successive ROPs never do."""
    by_day: dict[date, list[datetime]] = {}
    for r in rops.tolist():
        ts = datetime.fromtimestamp(r * rop_s, tz=UTC)
        by_day.setdefault(ts.date(), []).append(ts)
    pieces, stored = [], set(kpis.dates())
    for day, stamps in sorted(by_day.items()):
        files = kpis.day_files(day, region) if day in stored else []
        wanted = pl.col("ts").is_in(pl.Series(stamps, dtype=pl.Datetime("us", "UTC")).implode())
        if cells is not None:
            wanted &= pl.col("cell_id").is_between(pl.lit(cells[0]), pl.lit(cells[1]))
        keep = None if columns is None else list(dict.fromkeys([*lake.KEYS, *columns]))
        read = [_scanned(f, wanted, keep) for f in files]
        read = [r for r in read if r.height]
        if _overlap_in_time(read):
            pieces.append(lake.latest_rows(pl.concat(read, how="vertical_relaxed")))
        else:
            pieces += read
    return pl.concat(pieces, how="vertical_relaxed") if pieces else pl.DataFrame()


def _scanned(path: Path, wanted: pl.Expr, columns: list[str] | None) -> pl.DataFrame:
    """The rows of one lake file that `wanted` keeps (only `columns`, if given)."""
    rows = lake.scan([path]).filter(wanted)
    return (rows if columns is None else rows.select(columns)).collect()


def _overlap_in_time(frames: list[pl.DataFrame]) -> bool:
    """Whether any two of `frames` (one file's rows each) share a timestamp range."""
    spans = sorted((f["ts"].min(), f["ts"].max()) for f in frames)
    return any(later[0] <= earlier[1] for earlier, later in itertools.pairwise(spans))  # type: ignore[operator]


def site_chunks(cells: pl.DataFrame, size: int) -> list[tuple[str, str]]:
    """Cut (cell_id, site_id) pairs into cell_id ranges of about `size` cells that never
    split a site, so co-site features see every sibling. One range for everything when
    sites are not contiguous in cell_id order (ids that do not start with their site)."""
    ordered = cells.sort("cell_id")
    ids, sites = ordered["cell_id"].to_list(), ordered["site_id"].to_list()
    if not ids:
        return []
    runs = sum(1 for i in range(len(sites)) if i == 0 or sites[i] != sites[i - 1])
    if runs != len(set(sites)):
        return [(ids[0], ids[-1])]
    bounds, start = [], 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or (i - start >= size and sites[i] != sites[i - 1]):
            bounds.append((ids[start], ids[i - 1]))
            start = i
    return bounds


def inputs_fingerprint(layout: Layout, spec: FeatureSpec, day: date, params: FeatureParams) -> str:
    """What a day's features depend on: the home, the spec and the parameters that shape
    them, and every KPI file of the day and its lookback (path, size, modification time).
    A new delivery, a compaction or a corrected file changes it."""
    kpis = layout.kpi
    h = hashlib.sha256(
        f"{layout.home}|{spec.hash()}|{params.rop_minutes}|{params.min_denominator}|"
        f"{params.timezone}".encode()
    )
    needed = set(days_needed(spec, [day], params.rop_minutes))
    for f in (f for d in kpis.dates() if d in needed for f in kpis.day_files(d)):
        st = f.stat()
        h.update(f"|{f.relative_to(kpis.root)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def is_current(layout: Layout, spec: FeatureSpec, day: date) -> bool:
    """Whether the day's feature partitions exist and were built with `spec`."""
    files = layout.features.files(day, day)
    return bool(files) and all(
        lake.read_metadata(f).get(SPEC_HASH_KEY) == spec.hash() for f in files
    )


def record_built(
    layout: Layout, spec: FeatureSpec, built: list[DayBuild], reused: int = 0
) -> FeatureSummary:
    """After days were built: clear their stale marks in the ledger, mark their scores
    stale, and summarise what was built (`reused`: days whose cached build was kept)."""
    days = [b.day for b in built]
    with Ledger(layout.ledger) as ledger:
        ledger.clear_stale("features", days)
        ledger.mark_stale("scores", days)  # new features, so their scores must be redone
    cells = frozenset().union(*(b.cells for b in built)) if built else frozenset()
    parts = [c for b in built if (c := getattr(b, "coverage", None)) is not None]
    coverage = functools.reduce(FeatureCoverage.merged, parts) if parts else None
    return FeatureSummary(
        days,
        sum(b.rows for b in built),
        len(cells),
        built[-1].columns if built else 0,
        spec.hash(),
        layout.features.root,
        reused,
        coverage,
    )


def read_features(
    layout: Layout,
    window: DayWindow,
    spec: FeatureSpec | None = None,
    columns: list[str] | None = None,
) -> pl.DataFrame:
    """Feature rows of the days in `window` (only `columns`, if given). With `spec`,
    refuses partitions built by another spec (SpecMismatchError: the model would read
    columns that mean something else)."""
    rows = lake.scan(_feature_files(layout, window, spec))
    return (rows if columns is None else rows.select(columns)).collect()


def feature_chunks(
    layout: Layout, window: DayWindow, spec: FeatureSpec | None, rows: int
) -> Iterator[pl.DataFrame]:
    """The rows `read_features` reads, in chunks of whole cells of about `rows` rows (each
    a cell_id range, in ascending order; within a chunk, rows in the files' order), so a
    national day is never in memory whole. Parts are sorted by cell_id, so a chunk's read
    skips the row groups outside its range."""
    files = _feature_files(layout, window, spec)
    per_cell = lake.scan(files).group_by("cell_id").len().sort("cell_id").collect()
    ids, counts = per_cell["cell_id"].to_list(), per_cell["len"].to_list()
    start, held = 0, 0
    for i, count in enumerate(counts):
        held += count
        if held >= rows or i == len(counts) - 1:
            lo, hi = pl.lit(ids[start]), pl.lit(ids[i])
            yield lake.scan(files).filter(pl.col("cell_id").is_between(lo, hi)).collect()
            start, held = i + 1, 0


def _feature_files(layout: Layout, window: DayWindow, spec: FeatureSpec | None) -> list[Path]:
    """The feature files of `window`'s days (NoDataError when there are none), checked
    against `spec` (see `read_features`)."""
    ds = layout.features
    files = ds.files(window.start, window.end)
    if not files:
        raise NoDataError(
            f"no features under {ds.root} for {window.start or 'the start'} to "
            f"{window.end or 'the end'}; run `cellpulse features` first"
        )
    if spec is not None:
        _check_spec(files, spec)
    return files


def _check_spec(files: Iterable[Path], spec: FeatureSpec) -> None:
    """SpecMismatchError for the first of `files` built by another spec than `spec`."""
    want = spec.hash()
    for f in files:
        got = lake.read_metadata(f).get(SPEC_HASH_KEY)
        if got != want:
            raise SpecMismatchError(
                f"{f} was built with feature spec {got}, but spec {want} is expected; "
                "rebuild with `cellpulse features --from ... --to ...`"
            )


@dataclass(frozen=True)
class SamplePlan:
    """How much of a training window to read: at most `max_rows` rows to fit on, drawn
    from at most `max_cells` cells; whole days of `holdout_cells` of those cells on the
    newest `holdout_days` days; which ones follows from `seed`."""

    holdout_days: int
    max_rows: int
    max_cells: int
    holdout_cells: int
    seed: int

    @classmethod
    def of(cls, train: TrainSettings) -> SamplePlan:
        """The plan the `train` settings give."""
        return cls(
            train.holdout_days,
            train.max_train_rows,
            train.max_train_cells,
            train.holdout_cells,
            train.seed,
        )


@dataclass(frozen=True)
class SampleSummary:
    """What a sampled read took, of how much: rows and cells of the fitting days, cells and
    rows of the hold-out days."""

    rows: int
    of_rows: int
    cells: int
    of_cells: int
    days: int
    holdout_rows: int
    holdout_cells: int
    holdout_days: int

    def describe(self) -> str:
        """One line for the training summary."""
        return (
            f"sampled {self.rows:,} of {self.of_rows:,} feature rows of {self.days} days "
            f"from {self.cells:,} of {self.of_cells:,} cells; hold-out: {self.holdout_cells:,} "
            f"cells x {self.holdout_days} days ({self.holdout_rows:,} rows)"
        )


@dataclass(frozen=True)
class FeatureSample:
    """Feature rows of a sampled read (fitting days first, then the hold-out days, in day
    order), the cells they were drawn from, and what was taken."""

    features: pl.DataFrame
    cells: list[str]  # the cells rows were drawn from, sorted
    summary: SampleSummary


def read_training_sample(
    layout: Layout, days: list[date], spec: FeatureSpec, plan: SamplePlan
) -> FeatureSample:
    """Feature rows to train and judge on, sampled while reading a row group at a time, so
    memory follows the plan, not the network: on the fitting days (all but the newest
    `plan.holdout_days`), each row of the chosen cells is kept when a hash of (cell_id, ts,
    seed) falls below the rate that leaves about `plan.max_rows` rows, so every day and every
    chosen cell keeps the same share of its rows; on the hold-out days, every row of the
    hold-out cells, since alerts need consecutive ROPs. The same seed and files give the
    same rows. Refuses partitions built by another spec (SpecMismatchError)."""
    ds = layout.features
    by_day = {d: ds.files(d, d) for d in days}
    files = [f for d in days for f in by_day[d]]
    if not files:
        raise NoDataError(
            f"no features under {ds.root} for {days[0] if days else 'the start'} to "
            f"{days[-1] if days else 'the end'}; run `cellpulse features` first"
        )
    _check_spec(files, spec)
    split = max(len(days) - plan.holdout_days, 0)
    fit_days, holdout_days = days[:split], days[split:]
    per_cell = _rows_per_cell(f for d in fit_days for f in by_day[d])
    everyone = sorted(set(per_cell) | _cells_in(f for d in holdout_days for f in by_day[d]))
    keys = {c: _cell_key(c, plan.seed) for c in everyone}
    ranked = sorted(everyone, key=keys.__getitem__)
    chosen = ranked[: plan.max_cells]
    judged = set(ranked[: min(plan.holdout_cells, plan.max_cells)])
    available = sum(per_cell.get(c, 0) for c in chosen)
    rate = min(1.0, plan.max_rows / available) if available else 1.0
    chosen_keys = pl.DataFrame(
        {"cell_id": chosen, "_key": [keys[c] for c in chosen]},
        schema={"cell_id": pl.String(), "_key": pl.UInt64()},
    )
    chosen_ids = pl.Series("cell_id", chosen, pl.String()).implode()

    def sampled(group: pl.DataFrame) -> tuple[pl.Series, list[pl.Series]]:
        picked = group.join(chosen_keys, on="cell_id", how="left", maintain_order="left")
        draw = pl.Series("_draw", row_draws(picked["_key"].fill_null(0).to_numpy(), group["ts"]))
        return group["cell_id"].is_in(chosen_ids) & (draw < rate), [draw]

    judged_ids = pl.Series("cell_id", sorted(judged), pl.String()).implode()

    def whole(group: pl.DataFrame) -> tuple[pl.Series, list[pl.Series]]:
        return group["cell_id"].is_in(judged_ids), []

    fit = [piece for d in fit_days for f in by_day[d] for piece in _picked_rows(f, sampled)]
    fit = _at_most(fit, plan.max_rows)
    held = [piece for d in holdout_days for f in by_day[d] for piece in _picked_rows(f, whole)]
    pieces = [p for p in [*fit, *held] if p.height]
    features = pl.concat(pieces) if pieces else _no_rows(files[0])
    rows = sum(p.height for p in fit)
    summary = SampleSummary(
        rows=rows,
        of_rows=sum(per_cell.values()),
        cells=len(chosen),
        of_cells=len(everyone),
        days=len(fit_days),
        holdout_rows=sum(p.height for p in held),
        holdout_cells=len(judged),
        holdout_days=len(holdout_days),
    )
    return FeatureSample(features, sorted(chosen), summary)


def _picked_rows(
    path: Path, pick: Callable[[pl.DataFrame], tuple[pl.Series, list[pl.Series]]]
) -> Iterator[pl.DataFrame]:
    """The rows of the feature part `path` that `pick` keeps, one row group at a time:
    `pick` sees the group's cell_id and ts and returns the keep mask (and columns to add to
    the kept rows). The other columns are decoded one at a time and cut to the kept rows at
    once, so a row group is never held whole."""
    part = pq.ParquetFile(path)
    names = part.schema_arrow.names
    for group in range(part.num_row_groups):
        keys = pl.from_arrow(part.read_row_group(group, columns=["cell_id", "ts"]))
        assert isinstance(keys, pl.DataFrame)
        keep, extra = pick(keys)
        if not keep.any():
            continue
        mask = keep.to_arrow()
        columns = {n: part.read_row_group(group, columns=[n]).column(0).filter(mask) for n in names}
        rows = pl.from_arrow(pa.table(columns))
        assert isinstance(rows, pl.DataFrame)
        yield rows.with_columns(e.filter(keep) for e in extra)


def _no_rows(path: Path) -> pl.DataFrame:
    """No rows, with the columns of the feature part `path`."""
    return lake.scan([path]).head(0).collect()


def _rows_per_cell(files: Iterable[Path]) -> dict[str, int]:
    """Feature rows of each cell in `files`, from their cell_id column alone."""
    counts: dict[str, int] = {}
    for f in files:
        per = lake.scan([f]).group_by("cell_id").len().collect()
        for cell, n in per.iter_rows():
            counts[cell] = counts.get(cell, 0) + n
    return counts


def _cells_in(files: Iterable[Path]) -> set[str]:
    """The cells with rows in `files`."""
    return set().union(*(_rows_per_cell([f]) for f in files))


def _cell_key(cell_id: str, seed: int) -> int:
    """A 64-bit key of (cell_id, seed), the same on every machine and every run: it ranks
    cells for the sample and seeds the hash of each of their rows."""
    digest = hashlib.blake2b(f"{seed}:{cell_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: 64 well-mixed bits from each 64-bit key (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def row_draws(cell_keys: np.ndarray, ts: pl.Series) -> np.ndarray:
    """A uniform draw in [0, 1) per row from its cell's key and its ts: a row is sampled at
    rate r when its draw is below r, whichever batch or file it is read in."""
    micros = ts.dt.epoch("us").to_numpy().astype(np.uint64)
    mixed = _mix(cell_keys.astype(np.uint64) ^ _mix(micros))
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _at_most(pieces: list[pl.DataFrame], max_rows: int) -> list[pl.DataFrame]:
    """`pieces` without their `_draw` column, cut to at most `max_rows` rows in all by
    dropping the highest draws: the rate gives about `max_rows`, a few more by chance."""
    total = sum(p.height for p in pieces)
    if total > max_rows:
        draws = np.concatenate([p["_draw"].to_numpy() for p in pieces])
        cutoff = np.partition(draws, max_rows - 1)[max_rows - 1]
        pieces = [p.filter(pl.col("_draw") <= cutoff) for p in pieces]
    return [p.drop("_draw") for p in pieces]


def read_cell_kpis(
    layout: Layout, days: list[date], cells: list[str], columns: Iterable[str]
) -> pl.DataFrame:
    """KPI rows (cell_id, ts and those of `columns` the lake has) of `cells` on `days`,
    deliveries applied; read a day at a time, so memory follows the cells asked for."""
    kpis = layout.kpi
    wanted_cells = pl.Series("cell_id", cells, pl.String()).implode()
    pieces = []
    for day in days:
        files = kpis.day_files(day)
        if not files:
            continue
        rows = lake.scan(files)
        have = rows.collect_schema().names()
        keep = [c for c in dict.fromkeys([*lake.KEYS, *columns]) if c in have]
        day_rows = (
            rows.select(keep)
            .filter(pl.col("cell_id").is_in(wanted_cells))
            .collect(engine="streaming")
        )
        # Later deliveries of a key replace earlier ones, as every lake reader applies them.
        pieces.append(lake.latest_rows(day_rows))
    return pl.concat(pieces) if pieces else pl.DataFrame()


def feature_days(
    layout: Layout, days: list[date], spec: FeatureSpec | None, columns: Iterable[str]
) -> Iterator[pl.DataFrame]:
    """Per day of `days`: cell_id, ts and those of `columns` the day's features hold, for
    every cell — a window read a day and a few columns at a time."""
    for day in days:
        rows = lake.scan(_feature_files(layout, DayWindow(day, day), spec))
        have = rows.collect_schema().names()
        keep = [c for c in dict.fromkeys(["cell_id", "ts", *columns]) if c in have]
        yield rows.select(keep).collect()


def read_features_since(
    layout: Layout, spec: FeatureSpec, since: datetime, until: datetime
) -> pl.DataFrame:
    """Feature rows with `since` <= ts < `until` (the few ROPs scoring looks back on), read
    with the filter applied as the files are scanned; SpecMismatchError as `read_features`
    for a partition built by another spec; an empty frame when none is built."""
    last = (until - timedelta(microseconds=1)).date()
    files = layout.features.files(since.date(), last)
    if not files:
        return pl.DataFrame()
    for day in sorted({since.date(), last}):
        if layout.features.files(day, day) and not is_current(layout, spec, day):
            raise SpecMismatchError(
                f"{layout.features.day_dir(day)} was built with another feature spec than "
                f"{spec.hash()}; rebuild with `cellpulse features --from {day} --to {day}`"
            )
    rows = lake.scan(files).filter((pl.col("ts") >= since) & (pl.col("ts") < until))
    return rows.collect()


EVENT_COLUMNS = ("cell_id", "start", "end")
DEFAULT_KIND = "fault"  # a labels file without a `kind` column lists faults


def load_events(path: Path) -> pl.DataFrame | None:
    """Labelled events (cell_id, start, end, kind[, type]) from a parquet or CSV file, or None
    if the file does not exist. The simulator writes ground truth in this shape; an operator's
    labels file uses the same columns, `kind` (fault | load | false_alarm) being optional."""
    if not path.is_file():
        return None
    if path.suffix == ".csv":
        df = pl.read_csv(path, try_parse_dates=True)
    else:
        df = pl.read_parquet(path)
    missing = [c for c in EVENT_COLUMNS if c not in df.columns]
    if missing:
        raise NoDataError(
            f"{path}: labels need columns {', '.join(EVENT_COLUMNS)}; missing {', '.join(missing)}"
        )
    if "kind" not in df.columns:
        df = df.with_columns(pl.lit(DEFAULT_KIND).alias("kind"))
    ts = pl.Datetime("us", "UTC")
    return df.with_columns(
        pl.col(c).dt.replace_time_zone("UTC")
        if df.schema[c] == pl.Datetime("us")
        else pl.col(c).cast(ts)
        for c in ("start", "end")
    )


def load_labels(paths: Iterable[Path]) -> pl.DataFrame | None:
    """Every labelled event (cell_id, start, end, kind) of those `paths` that exist, e.g. the
    simulator's ground truth and people's verdicts on alerts; None when none exists."""
    found = [e for path in paths if (e := load_events(path)) is not None]
    return pl.concat([e.select(*EVENT_COLUMNS, "kind") for e in found]) if found else None
