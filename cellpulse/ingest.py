"""Ingest: landing files -> validated, de-duplicated, contract-shaped partitions in lake/kpi.

Pure parts (`conform`, `validate`, `last_per_key`) take and return tables. `ingest_files` is the
I/O around them: it reads landing files (never modifying them), writes partitions atomically,
quarantines bad rows with a readable report, and records every file in the ledger so that the
same content is never ingested twice.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache, partial
from pathlib import Path
from typing import cast

import numpy as np
import polars as pl

from cellpulse import contract, echo, failpoints, lake, progress
from cellpulse.errors import UNREADABLE, ContractError, MappingError, NoDataError
from cellpulse.lake import file_sha256
from cellpulse.ledger import FileRecord, Ledger
from cellpulse.mapping import Mapping, apply_mapping, read_source
from cellpulse.settings import Settings

SUPPORTED_SUFFIXES = (".parquet",)
UNASSIGNED_REGION = "unassigned"
UNPARSABLE = "_unparsable_"  # prefix of conform's marks for values that were not numbers
UNALIGNED_TS = "_unaligned_ts"  # conform's mark: a ts with a sub-microsecond part, as given
RAW_TS = "ts_raw"  # that ts, beside the quarantined row


@dataclass(frozen=True)
class Problem:
    """One broken rule, counted over a file, with a first example."""

    column: str
    rule: str
    rows: int
    example: str


@dataclass
class FileResult:
    path: Path
    status: str  # ingested | duplicate | rejected | skipped
    rows_in: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    reason: str | None = None
    problems: list[Problem] = field(default_factory=list)


@dataclass
class IngestSummary:
    files: list[FileResult]
    partitions_written: int
    days: list[date]
    lake_dir: Path
    quarantine_dir: Path
    rows_replaced: int = 0  # stored rows that a later delivery of the same key replaced

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def rows_accepted(self) -> int:
        return sum(f.rows_accepted for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        return sum(f.rows_quarantined for f in self.files)

    @property
    def rejected(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "rejected"]


def list_landing_files(paths: Sequence[Path]) -> list[Path]:
    """Files to ingest, in delivery order (modification time, then name).

    Symbolic links below a folder are listed too (never followed), so that ingest refuses
    them with a reason instead of passing over them in silence."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(
                f
                for f in p.rglob("*")
                if (f.is_symlink() or f.is_file()) and not f.name.startswith(".")
            )
        elif p.is_file() or p.is_symlink():
            found.append(p)
        else:
            raise NoDataError(f"{p}: no such file or folder; pass landing files or a folder")
    return sorted(set(found), key=lambda f: (f.lstat().st_mtime_ns, f.name))


def read_landing_file(path: Path) -> pl.DataFrame:
    """Read one contract-shaped file, or raise ContractError saying why it cannot be read."""
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise ContractError(
            f"{path}: unsupported file type '{path.suffix}'; contract-shaped input is parquet "
            "(convert the export, or move the file out of the landing folder)"
        )
    if path.stat().st_size == 0:
        raise ContractError(f"{path}: the file is empty; ask the OSS export to re-deliver it")
    try:
        # glob=False: a landing file's name is a name; "x[1].parquet" or "*.parquet" is not
        # a pattern matching other files
        return pl.read_parquet(path, hive_partitioning=False, glob=False)
    except UNREADABLE as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ContractError(
            f"{path}: not a readable parquet file ({first[:160]}); it may be truncated or "
            "still being written: re-deliver it"
        ) from exc


def read_input(path: Path, settings: Settings, mapping: Mapping | None) -> pl.DataFrame:
    """One landing file as contract-named columns: directly if it is contract-shaped
    parquet, through the source mapping otherwise."""
    if mapping is None:
        return read_landing_file(path)
    if path.stat().st_size == 0:
        raise ContractError(f"{path}: the file is empty; ask the OSS export to re-deliver it")
    return apply_mapping(read_source(path, mapping), mapping, settings.rop_minutes, str(path))


def conform(raw: pl.DataFrame, source: str) -> tuple[pl.DataFrame, list[Problem]]:
    """Shape a file's table like the contract: key columns present and typed, measurements as
    floats, absent optional columns as nulls, unknown columns dropped.

    Values that are not numbers become null here; a boolean `_unparsable_<column>` marks
    them (only for columns that were not numeric to begin with) so that `validate` reports
    them and no bad value silently disappears.
    """
    missing = [k for k in contract.KEYS if k not in raw.columns]
    if missing:
        raise ContractError(
            f"{source}: missing key column(s) {', '.join(missing)}; a contract-shaped file needs "
            "cell_id and ts (a foreign export needs a source mapping)"
        )
    source_schema = raw.schema  # built anew on every access: once per file is enough
    ts_type = source_schema["ts"]
    if not isinstance(ts_type, pl.Datetime):
        raise ContractError(
            f"{source}: column ts has type {ts_type}, expected a timestamp; write ts as a "
            "timezone-aware UTC timestamp (or map the export's time column)"
        )
    if ts_type.time_zone is None:
        raise ContractError(
            f"{source}: column ts has no timezone; the contract needs UTC-aware timestamps "
            "(period start), so a naive local time cannot be placed safely"
        )
    known = contract.schema()
    nested = [name for name, dtype in source_schema.items() if name in known and not _scalar(dtype)]
    if nested:
        raise ContractError(
            f"{source}: column(s) {echo.name_list(nested)} hold lists, records, objects or "
            "raw bytes, not single values; write one number (or text) per row and column"
        )
    problems: list[Problem] = []
    unknown = [c for c in raw.columns if c not in known]
    if unknown:
        problems.append(Problem(echo.name_list(unknown, 5), "unknown column, ignored", 0, ""))
    return raw.select(_conforming(tuple(source_schema.items()))), problems


def _scalar(dtype: pl.DataType) -> bool:
    return not (dtype.is_nested() or isinstance(dtype, pl.Object | pl.Binary))


@lru_cache(maxsize=32)
def _conforming(source_schema: tuple[tuple[str, pl.DataType], ...]) -> tuple[pl.Expr, ...]:
    """`conform`'s expressions for files of one schema: an ingest run usually reads many
    files of the same export, and building the expressions costs about as much as running
    them on a small file."""
    present = dict(source_schema)
    exprs: list[pl.Expr] = [
        pl.col("cell_id").cast(pl.String),
        pl.col("ts").dt.convert_time_zone("UTC").dt.cast_time_unit("us"),
    ]
    unparsable: list[pl.Expr] = []
    ts_type = present["ts"]
    if isinstance(ts_type, pl.Datetime) and ts_type.time_unit == "ns":
        # The lake holds microseconds: a ts with a sub-microsecond part would be cut to a
        # different instant (perhaps onto the ROP), so such rows are kept apart with the
        # value as delivered.
        ts_utc = pl.col("ts").dt.convert_time_zone("UTC")
        unparsable.append(
            pl.when(ts_utc.dt.epoch("ns") % 1000 != 0)
            .then(ts_utc.dt.to_string("%Y-%m-%dT%H:%M:%S%.9f%:z"))
            .alias(UNALIGNED_TS)
        )
    for dim in contract.DIMENSIONS:
        value = pl.col(dim).cast(pl.String) if dim in present else pl.lit(None, pl.String)
        if dim == "region":
            value = (
                pl.when(value.is_null() | (value == ""))
                .then(pl.lit(UNASSIGNED_REGION))
                .otherwise(value)
            )
        exprs.append(value.alias(dim))
    for name in contract.MEASUREMENT_NAMES:
        if name not in present:
            exprs.append(pl.lit(None, pl.Float64).alias(name))
            continue
        as_float = pl.col(name).cast(pl.Float64, strict=False)
        exprs.append(as_float)
        if not present[name].is_numeric():
            unparsable.append(
                (pl.col(name).is_not_null() & as_float.is_null()).alias(f"{UNPARSABLE}{name}")
            )
    return (*exprs, *unparsable, pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"))


def _rules(settings: Settings, now: datetime) -> list[tuple[str, str, pl.Expr]]:
    """(column, rule, expression true where the rule is broken)."""
    return list(_rules_for(*_rule_params(settings, now)))


def _rule_params(
    settings: Settings, now: datetime
) -> tuple[int, int, int, float, tuple[str, ...], datetime]:
    return (
        settings.rop_minutes,
        settings.ingest.future_tolerance_minutes,
        settings.ingest.retention_days,
        settings.ingest.succ_tolerance,
        tuple(sorted(settings.regions or ())),
        now,
    )


@lru_cache(maxsize=8)
def _screens_for(*params: object) -> tuple[pl.Expr, ...]:
    """Cheap boolean columns, true on every row that breaks a rule (and possibly a few more).

    Range and finiteness rules are screened over all measurements at once: a row is finite
    everywhere if the sum of its measurements is finite, and above every lower bound if the
    minimum of the columns sharing that bound is. The other rules are cheap as they are.
    """
    ranged = {m.name for m in contract.MEASUREMENTS}
    screens = [
        expr
        for column, rule, expr in _rules_for(*params)
        if not (column in ranged and (rule == "NaN or infinite" or rule.startswith("below")))
        and not (column in ranged and rule.startswith("above") and "ROP" not in rule)
    ]
    screens.append(~pl.sum_horizontal(contract.MEASUREMENT_NAMES).is_finite())
    lows: dict[float, list[str]] = {}
    for m in contract.MEASUREMENTS:
        if m.low is not None:
            lows.setdefault(m.low, []).append(m.name)
        if m.high is not None:
            screens.append(pl.col(m.name) > m.high)
    screens += [pl.min_horizontal(names) < low for low, names in lows.items()]
    return tuple(screen.fill_null(False).alias(f"_s{i}") for i, screen in enumerate(screens))


@lru_cache(maxsize=8)
def _rules_for(
    rop: int,
    future_tolerance_minutes: int,
    retention_days: int,
    succ_tolerance: float,
    regions: tuple[str, ...],
    now: datetime,
) -> tuple[tuple[str, str, pl.Expr], ...]:
    # Built once per run and shared by every file: building ~60 expressions costs more
    # than evaluating them on a small file.
    rules: list[tuple[str, str, pl.Expr]] = [
        (
            "cell_id",
            "missing or empty cell_id",
            pl.col("cell_id").is_null() | (pl.col("cell_id").str.strip_chars() == ""),
        ),
        (
            "cell_id",
            f"not a valid cell id ({contract.CELL_ID_RULE}); fix the id in the export, or map "
            "it to one",
            _present(pl.col("cell_id"))
            & _breaks(pl.col("cell_id"), contract.CELL_ID_PATTERN, contract.CELL_ID_MAX_CHARS),
        ),
        # A region becomes a folder of the lake: a value that is not a plain folder name
        # would be written outside it, or where no reader looks.
        (
            "region",
            f"not a valid region ({contract.PARTITION_VALUE_RULE}); fix the region in the "
            "export, or map it to one",
            _breaks(
                pl.col("region"),
                contract.PARTITION_VALUE_PATTERN,
                contract.PARTITION_VALUE_MAX_CHARS,
            ),
        ),
        ("ts", "missing ts", pl.col("ts").is_null()),
        (
            "ts",
            f"not aligned to the {rop}-minute ROP",
            (pl.col("ts").dt.epoch("s") % (rop * 60)) != 0,
        ),
        (
            "ts",
            f"more than {future_tolerance_minutes} min in the future",
            pl.col("ts") > now + timedelta(minutes=future_tolerance_minutes),
        ),
        (
            "ts",
            f"older than the {retention_days}-day retention",
            pl.col("ts") < now - timedelta(days=retention_days),
        ),
    ]
    for m in contract.MEASUREMENTS:
        c = pl.col(m.name)
        rules.append((m.name, "NaN or infinite", c.is_nan() | c.is_infinite()))
        if m.low is not None:
            rules.append((m.name, f"below {m.low:g}", c < m.low))
        if m.high is not None:
            rules.append((m.name, f"above {m.high:g}", c > m.high))
    rules.append(
        ("unavail_s", f"above the ROP length ({rop * 60} s)", pl.col("unavail_s") > rop * 60)
    )
    tol = 1 + succ_tolerance
    for succ, att in contract.SUCCESS_PAIRS:
        rules.append((succ, f"{succ} > {att}", pl.col(succ) > pl.col(att) * tol))
    if regions:
        rules.append(
            (
                "region",
                f"region not held by this installation (allowed: {list(regions)})",
                ~pl.col("region").is_in(list(regions)),
            )
        )
    return tuple(rules)


def _present(text: pl.Expr) -> pl.Expr:
    return text.is_not_null() & (text.str.strip_chars() != "")


def _breaks(text: pl.Expr, pattern: str, max_chars: int) -> pl.Expr:
    """Whether `text` is longer than `max_chars` or does not match `pattern`; null does not
    break it (other rules judge null). The patterns allow ASCII only, so `max_chars` bounds
    the bytes too."""
    return (text.str.len_chars() > max_chars) | ~text.str.contains(pattern).fill_null(True)


def validate(
    df: pl.DataFrame, settings: Settings, now: datetime
) -> tuple[pl.DataFrame, pl.DataFrame, list[Problem]]:
    """Split conformed rows into (good, bad) and list every problem of the file at once.

    `bad` keeps the row number in the source file and a `reason` naming every rule it broke.
    Every rule is first evaluated as a cheap boolean over all rows; reasons are spelled out
    only for the (usually few) rows that broke one.
    """
    params = _rule_params(settings, now)
    rules = list(_rules_for(*params))
    marks = [c for c in df.columns if c.startswith(UNPARSABLE)]
    rules += [(c.removeprefix(UNPARSABLE), "not a number", pl.col(c)) for c in marks]
    # First pass, over every row: the screens (a superset of the broken rows). Materialising
    # one boolean column per screen and then reducing them is several times faster than one
    # wide any_horizontal expression.
    screens = [*_screens_for(*params), *(pl.col(c).fill_null(False) for c in marks)]
    if UNALIGNED_TS in df.columns:
        unaligned = pl.col(UNALIGNED_TS).is_not_null()
        rules.append(
            (
                "ts",
                f"not aligned to the {settings.rop_minutes}-minute ROP: a sub-microsecond part "
                f"(the ts as delivered is in {RAW_TS})",
                unaligned,
            )
        )
        screens.append(unaligned)
    suspect = df.select(screens).select(pl.any_horizontal(pl.all())).to_series()
    bad_mask = suspect
    bad_flags = pl.DataFrame()
    if suspect.any():
        # Second pass, on the suspects only: which rules each row broke.
        bad_flags = df.filter(suspect).select(
            b.fill_null(False).alias(f"_r{i}") for i, (_, _, b) in enumerate(rules)
        )
        broke_one = bad_flags.select(pl.any_horizontal(pl.all())).to_series()
        bad_mask = pl.Series(np.zeros(df.height, dtype=bool)).scatter(
            suspect.arg_true().filter(broke_one), True
        )
        bad_flags = bad_flags.filter(broke_one)
    clean = df.drop(marks)
    problems: list[Problem] = []
    if bad_mask.any():
        good = clean.filter(~bad_mask).drop(UNALIGNED_TS, strict=False)
        bad = clean.filter(bad_mask)
        if UNALIGNED_TS in bad.columns:
            bad = bad.rename({UNALIGNED_TS: RAW_TS})
        labels = [f"{column}: {rule}" for column, rule, _ in rules]
        reasons = (
            pl.concat_list(
                pl.when(pl.col(f"_r{i}")).then(pl.lit(label)) for i, label in enumerate(labels)
            )
            .list.drop_nulls()
            .list.join("; ")
        )
        bad = bad.with_columns(bad_flags.select(reasons.alias("reason")).to_series())
        counts = bad_flags.sum().row(0)
        for i, (column, rule, _) in enumerate(rules):
            if counts[i]:
                first = _first_row(bad.filter(bad_flags[f"_r{i}"]))
                example = f"row {first['_row']}, cell {first['cell_id']}, ts {first['ts']}"
                if first.get(RAW_TS) is not None:
                    example += f" (as delivered {first[RAW_TS]})"
                problems.append(Problem(column, rule, int(counts[i]), example))
    else:
        good = clean.drop(UNALIGNED_TS, strict=False)
        bad = good.clear().with_columns(pl.lit(None, pl.String).alias("reason"))
    # A key delivered twice in one file: the later row is the correction and wins.
    deduped = last_per_key(good)
    if deduped.height < good.height:
        first = _first_row(good.filter(pl.struct(*lake.KEYS).is_duplicated()))
        problems.append(
            Problem(
                "cell_id, ts",
                "duplicate key in file; last row kept",
                good.height - deduped.height,
                f"cell {first['cell_id']} at {first['ts']}",
            )
        )
    return deduped, bad, problems


def _first_row(rows: pl.DataFrame) -> dict[str, object]:
    """The first of `rows`, its ts as text: a damaged file's ts may lie outside the years a
    Python datetime can hold, and the report must still name it."""
    first = (
        rows.head(1)
        .with_columns(pl.col("ts").dt.to_string("%Y-%m-%d %H:%M:%S%:z"))
        .row(0, named=True)
    )
    first["cell_id"] = echo.shown(first["cell_id"], echo.MAX_NAME_CHARS)  # as the file has it
    return first


def last_per_key(rows: pl.DataFrame) -> pl.DataFrame:
    """The last row of each (cell_id, ts), in the original order."""
    # Distinct 64-bit key hashes prove there are no duplicates (a collision could only make
    # the count smaller), which spares the exact check in the usual case.
    key_hash = pl.struct(*lake.KEYS).hash()
    if rows.select(key_hash.n_unique()).item() == rows.height:
        return rows
    return rows.filter(pl.struct(*lake.KEYS).is_last_distinct())


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


def ingest_files(
    paths: Sequence[Path],
    settings: Settings,
    now: datetime | None = None,
    force: bool = False,
    mapping: Mapping | None = None,
) -> IngestSummary:
    """Ingest landing files into lake/kpi. Idempotent: a file whose content was seen before
    is skipped (a duplicate under another name is recorded as such); `force` re-reads them.
    `mapping` reads a foreign export (see cellpulse.mapping)."""
    now = now or datetime.now(UTC)
    kpi = settings.layout.kpi
    results: list[FileResult] = []
    written = _Written()
    files = list_landing_files(paths)
    with (
        Ledger(settings.layout.ledger) as ledger,
        ThreadPoolExecutor(READ_THREADS) as pool,
        ThreadPoolExecutor(WRITE_THREADS) as writer,
    ):
        batch = _Batch(kpi, writer)
        try:
            outcomes = _read_ahead(files, settings, now, ledger, force, mapping, pool)
            for outcome in progress.track(outcomes, "ingest: reading files", total=len(files)):
                result, record, good = outcome.result, outcome.record, outcome.good
                results.append(result)
                if outcome.report:
                    _write_quarantine(settings, result, outcome.quarantined)
                if good is None:
                    if record is not None:
                        ledger.record([record])
                        if record.status == "duplicate":
                            _archive([result.path], settings)
                    continue
                assert record is not None
                # Batches bound memory for a backlog of any size; each is recorded in the
                # ledger once its partitions are safely written. A batch ends where a new day
                # starts, so a day gets one delivery per run, not one per batch that touched
                # it; a hard cap keeps files that each span many days from growing a batch
                # without end.
                if batch.files and (
                    (batch.rows >= settings.ingest.batch_rows and batch.ends_before(good))
                    or batch.rows >= 4 * settings.ingest.batch_rows
                ):
                    batch.flush(ledger, written, settings)
                    batch = _Batch(kpi, writer)
                batch.add(result, record, good)
            batch.flush(ledger, written, settings)
        finally:
            batch.abort()  # after an error: drop what was written but not published
    return IngestSummary(
        results,
        written.partitions,
        sorted(written.days),
        kpi.root,
        settings.layout.quarantine,
        written.replaced,
    )


READ_THREADS = 3  # reading, hashing and validating release the GIL: overlap files on 2 cores
READ_AHEAD = 4  # files read ahead of the writers (bounds memory)
# Writing fragments is mostly the kernel copying them to the page cache; one thread fell
# behind the readers on large files and left a backlog to write at the end of a delivery.
WRITE_THREADS = 2


@dataclass
class _Outcome:
    """What reading one landing file decided; written to the lake and ledger in order."""

    result: FileResult
    record: FileRecord | None
    good: Accepted | None = None
    quarantined: pl.DataFrame | None = None
    report: bool = False  # write a quarantine report for this file


def _read_ahead(
    files: list[Path],
    settings: Settings,
    now: datetime,
    ledger: Ledger,
    force: bool,
    mapping: Mapping | None,
    pool: ThreadPoolExecutor,
) -> Iterator[_Outcome]:
    """Outcomes of `files` in delivery order, reading up to READ_AHEAD new files in parallel.

    Only new content is read: a file whose hash the ledger (or an earlier file of this run)
    already holds is skipped, or recorded as a duplicate if it arrived under another name.
    """
    ahead: deque[tuple[str, Callable[[], _Outcome]]] = deque()
    first_status: dict[str, str] = {}  # hash -> outcome of its first file in this run
    claimed: set[str] = set()
    for path, (sha, size) in zip(files, pool.map(_fingerprint, files), strict=True):
        previous = ledger.seen(sha)
        if sha not in claimed and (previous is None or force):
            claimed.add(sha)
            task = pool.submit(_validate_one, path, sha, size, settings, now, mapping)
            ahead.append((sha, task.result))
        else:
            ahead.append(
                (sha, partial(_seen_before, path, sha, size, previous, ledger, first_status))
            )
        while len(ahead) > READ_AHEAD:
            yield _settle(ahead.popleft(), first_status)
    while ahead:
        yield _settle(ahead.popleft(), first_status)


def _settle(item: tuple[str, Callable[[], _Outcome]], first_status: dict[str, str]) -> _Outcome:
    sha, get = item
    outcome = get()
    first_status.setdefault(sha, outcome.result.status)
    return outcome


def _fingerprint(path: Path) -> tuple[str, int]:
    if path.is_symlink():
        # Never read through a link: it is fingerprinted by where it is and what it names,
        # so a link left in place is refused once, not on every run.
        link = f"symlink\0{path}\0{os.readlink(path)}".encode(errors="surrogateescape")
        return hashlib.sha256(link).hexdigest(), path.lstat().st_size
    return file_sha256(path), path.stat().st_size


def _seen_before(
    path: Path,
    sha: str,
    size: int,
    previous: str | None,
    ledger: Ledger,
    first_status: dict[str, str],
) -> _Outcome:
    status = first_status.get(sha) or previous
    if ledger.has(sha, str(path)):  # this very file, seen before
        return _Outcome(FileResult(path, "skipped", reason=f"already {status}"), None)
    # The same content under another name: a duplicated delivery.
    reason = f"same content as a file already {status}"
    return _Outcome(
        FileResult(path, "duplicate", reason=reason),
        FileRecord(sha, str(path), size, "duplicate", 0, 0, 0, reason),
    )


def _archive(paths: Iterable[Path], settings: Settings) -> None:
    """With `ingest.after: archive`, move files whose rows are safely in the lake (and in the
    ledger) out of the landing folder, keeping their path below it. Content is untouched."""
    if settings.ingest.after != "archive":
        return
    for path in paths:
        if path.is_symlink():  # refused at reading; a link's target is never moved
            continue
        target = settings.layout.archive / _below_landing(path, settings)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)


def _below_landing(path: Path, settings: Settings) -> Path:
    """`path` relative to the landing folder (its name alone if it lies elsewhere). Its
    folders are resolved, the file itself is not: a link is placed where the link is."""
    landing = settings.layout.landing.resolve()
    source = path.parent.resolve() / path.name
    return source.relative_to(landing) if source.is_relative_to(landing) else Path(path.name)


def _validate_one(
    path: Path, sha: str, size: int, settings: Settings, now: datetime, mapping: Mapping | None
) -> _Outcome:
    """Read, conform and validate one new file (pure: the caller writes what it decides).

    Whatever reading, conforming or validating the file raises rejects this file with the
    reason; the other files of the run go on."""
    try:
        return _decide(path, sha, size, settings, now, mapping)
    except (ContractError, MappingError) as exc:
        reason = echo.shown(exc)
    except UNREADABLE as exc:  # a file no rule foresaw (e.g. a type polars cannot convert)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        reason = echo.shown(
            f"{path}: cannot be read as KPI rows ({type(exc).__name__}: {first}); fix the "
            "export or move the file out of the landing folder"
        )
    result = FileResult(path, "rejected", reason=reason)
    return _Outcome(
        result, FileRecord(sha, str(path), size, "rejected", 0, 0, 0, reason), report=True
    )


def _decide(
    path: Path, sha: str, size: int, settings: Settings, now: datetime, mapping: Mapping | None
) -> _Outcome:
    if path.is_symlink():
        raise ContractError(
            f"{path}: a symbolic link; landing takes regular files only, so that nothing "
            "outside it is read or moved (copy the file into the landing folder instead)"
        )
    raw = read_input(path, settings, mapping)
    conformed, problems = conform(raw, str(path))
    good, bad, row_problems = validate(conformed, settings, now)
    result = FileResult(
        path,
        "ingested",
        rows_in=conformed.height,
        rows_accepted=conformed.height - bad.height,  # a row superseded in-file still counts
        rows_quarantined=bad.height,
        problems=problems + row_problems,
    )
    if bad.height and settings.ingest.bad_rows == "reject_file":
        result.status = "rejected"
        result.reason = (
            f"{bad.height} of {conformed.height} rows break the contract "
            "(policy reject_file); see the report"
        )
        result.rows_accepted, result.rows_quarantined = 0, conformed.height
        record = FileRecord(
            sha, str(path), size, "rejected", conformed.height, 0, conformed.height, result.reason
        )
        return _Outcome(result, record, quarantined=bad, report=True)
    record = FileRecord(sha, str(path), size, "ingested", conformed.height, good.height, bad.height)
    accepted = accept(good.drop("_row"))
    if len(accepted.parts) == 1 and mapping is None and _unchanged(raw, good):
        # A file already exactly in the lake's shape, one partition, every row accepted as
        # it is, is copied into the lake instead of re-encoded (see DeltaStream.adopt).
        accepted = replace(accepted, adopt=(path, sha))
    return _Outcome(
        result,
        record,
        good=accepted,
        quarantined=bad if bad.height else None,
        report=bool(bad.height or result.problems),
    )


def _write_quarantine(settings: Settings, result: FileResult, bad: pl.DataFrame | None) -> None:
    """The file's report (and its bad rows) under quarantine/, at the file's path below the
    landing folder, so same-named files from different folders keep their own reports."""
    base = _quarantine_base(settings.layout.quarantine / _below_landing(result.path, settings))
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


@dataclass
class _Written:
    """What the batches of one ingest run wrote."""

    partitions: int = 0
    replaced: int = 0
    days: set[date] = field(default_factory=set)


@dataclass(frozen=True)
class Accepted:
    """A file's accepted rows split into lake partitions, prepared in the reading thread."""

    parts: dict[tuple[date, str], pl.DataFrame]  # (day, region) -> rows
    key_hash: pl.Series  # 64-bit hash of each row's (cell_id, ts), to find re-deliveries
    rows: int
    span: tuple[datetime, datetime] | None  # first and last ts; None without rows
    # (path, sha256) of a landing file that is its single partition byte for byte.
    adopt: tuple[Path, str] | None = None

    @property
    def first_day(self) -> date:
        return min(day for day, _ in self.parts)

    @property
    def last_day(self) -> date:
        return max(day for day, _ in self.parts)


def accept(good: pl.DataFrame) -> Accepted:
    key_hash = good.select(pl.struct(*lake.KEYS).hash()).to_series()
    parts = split_partitions(good)
    ts = good["ts"]
    span = (cast(datetime, ts.min()), cast(datetime, ts.max())) if good.height else None
    return Accepted(parts, key_hash, good.height, span)


def _unchanged(raw: pl.DataFrame, good: pl.DataFrame) -> bool:
    """Whether the accepted rows are the file's rows exactly: same columns, order and types
    (so conforming cast nothing), every region given (so none was filled in), and no row
    quarantined or superseded."""
    same_shape = good.height == raw.height and list(raw.schema.items()) == [
        column for column in good.schema.items() if column[0] != "_row"
    ]
    return (
        same_shape
        and not raw.select((pl.col("region").is_null() | (pl.col("region") == "")).any()).item()
    )


def split_partitions(rows: pl.DataFrame) -> dict[tuple[date, str], pl.DataFrame]:
    """Rows by (UTC day, region); a file usually holds one day, which needs no split."""
    parts: dict[tuple[date, str], pl.DataFrame] = {}
    if rows.is_empty():
        return parts
    ts = rows["ts"]
    lo, hi = cast(datetime, ts.min()), cast(datetime, ts.max())
    if lo.date() == hi.date():  # ts is UTC (conform made it so): its date is the UTC day
        by_day = {lo.date(): rows}
    else:
        with_day = rows.with_columns(pl.col("ts").dt.date().alias("_day"))
        split = with_day.partition_by("_day", as_dict=True, include_key=False)
        by_day = {cast(date, d): part for (d,), part in split.items()}
    for d, day_rows in sorted(by_day.items()):
        for region, part in lake.split_regions(day_rows):
            parts[(d, region)] = part
    return parts


class _Batch:
    """Accepted files that go to the lake as one delivery. Their rows are written (by the
    single writer thread) while later files are still being read; `flush` publishes them
    and then records the files in the ledger."""

    def __init__(self, kpi: lake.Dataset, writer: ThreadPoolExecutor) -> None:
        self.kpi = kpi
        self.writer = writer
        self.files: list[tuple[FileResult, FileRecord, Accepted]] = []
        self.rows = 0
        self.stream = lake.DeltaStream(kpi)
        self.writes: list[Future[None]] = []

    def add(self, result: FileResult, record: FileRecord, accepted: Accepted) -> None:
        self.files.append((result, record, accepted))
        self.rows += accepted.rows
        for (day, region), rows in accepted.parts.items():
            if accepted.adopt is not None:
                source, sha = accepted.adopt
                write = self.stream.prepare_adopt(day, region, source, sha, rows)
            else:
                write = self.stream.prepare_write(day, region, rows)
            self.writes.append(self.writer.submit(write))

    def ends_before(self, accepted: Accepted) -> bool:
        """Whether every row of `accepted` falls on a later day than every row of the batch."""
        if not accepted.rows:
            return True
        newest = [a.last_day for _, _, a in self.files if a.rows]
        return not newest or accepted.first_day > max(newest)

    def flush(self, ledger: Ledger, written: _Written, settings: Settings) -> None:
        """Publish the batch's rows, then record its files; compact days holding
        `ingest.compact_parts` deliveries.

        Partitions are published before the ledger: a crash in between means the files are
        read again next time, and delivering the same rows twice reads the same as once.
        """
        for write in self.writes:
            write.result()
        accepted = [a for _, _, a in self.files if a.rows]
        parts: list[tuple[date, pl.DataFrame]] = [
            (day, rows) for a in accepted for (day, _), rows in a.parts.items()
        ]
        if accepted and self._redelivers_keys(accepted):
            # Files of this batch re-deliver one another's keys (perhaps moving a key to
            # another region): write the batch again with the later file's row per key.
            self.stream.abort()
            stacked = pl.concat([rows for _, rows in parts], rechunk=False)
            unique = last_per_key(stacked)  # keys are unique within a file: order is kept
            written.replaced += stacked.height - unique.height
            parts = []
            for (day, region), rows in split_partitions(unique).items():
                self.stream.write(day, region, rows)
                parts.append((day, rows))
        days = {day for day, _ in parts}
        for day in sorted(days):
            stored = _stored_keys_in(self.kpi, day, [rows for d, rows in parts if d == day])
            written.replaced += stored
        written.partitions += len(self.stream.commit())
        failpoints.hit("ingest.before_ledger")
        ledger.record([rec for _, rec, _ in self.files], stale_days=days)
        written.days |= days
        _archive([r.path for r, _, _ in self.files], settings)
        for day in sorted(days):
            if (
                len({lake.delta_seq(f) for f in self.kpi.deltas(day)})
                >= settings.ingest.compact_parts
            ):
                self.kpi.compact(day)
                failpoints.hit("ingest.compacted")
        self.files, self.writes = [], []

    def abort(self) -> None:
        for write in self.writes:
            write.cancel()
        wait(self.writes)
        self.stream.abort()

    @staticmethod
    def _redelivers_keys(accepted: list[Accepted]) -> bool:
        # Files covering disjoint periods (hourly exports, say) cannot share a key: that is
        # proved from their first and last ts without looking at a key.
        spans = sorted(a.span for a in accepted if a.span is not None)
        if all(later[0] > earlier[1] for earlier, later in itertools.pairwise(spans)):
            return False
        hashes = pl.concat([a.key_hash for a in accepted], rechunk=False)
        return hashes.n_unique() < hashes.len()  # a hash collision can only lower the count


def _stored_keys_in(kpi: lake.Dataset, day: date, parts: list[pl.DataFrame]) -> int:
    """How many of the parts' keys the lake already holds for `day` (rows a delivery
    replaces)."""
    files = kpi.day_files(day)
    if not files:
        return 0
    keys = pl.concat([p.select(lake.KEYS) for p in parts])
    lo, hi = keys["ts"].min(), keys["ts"].max()
    stored = lake.scan(files).select(lake.KEYS).filter(pl.col("ts").is_between(lo, hi))
    hits = keys.lazy().join(stored, on=list(lake.KEYS), how="semi")
    return int(hits.select(pl.len()).collect().item())
