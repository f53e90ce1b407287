"""Ingest: landing files -> validated, de-duplicated, contract-shaped partitions in lake/kpi.

Pure parts (`conform`, `validate`, `merge_rows`) take and return tables. `ingest_files` is the
I/O around them: it reads landing files (never modifying them), writes partitions atomically,
quarantines bad rows with a readable report, and records every file in the ledger so that the
same content is never ingested twice.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import cast

import polars as pl

from cellpulse import contract, failpoints, lake, progress
from cellpulse.errors import ContractError, MappingError, NoDataError
from cellpulse.ledger import FileRecord, Ledger
from cellpulse.mapping import Mapping, apply_mapping, read_source
from cellpulse.settings import Settings

SUPPORTED_SUFFIXES = (".parquet",)
UNASSIGNED_REGION = "unassigned"
UNPARSABLE = "_unparsable_"  # prefix of conform's marks for values that were not numbers


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
    """Files to ingest, in delivery order (modification time, then name)."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        elif p.is_file():
            found.append(p)
        else:
            raise NoDataError(f"{p}: no such file or folder; pass landing files or a folder")
    return sorted(set(found), key=lambda f: (f.stat().st_mtime_ns, f.name))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
        return pl.read_parquet(path, hive_partitioning=False)
    except Exception as exc:
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
    ts_type = raw.schema["ts"]
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
    problems: list[Problem] = []
    unknown = [c for c in raw.columns if c not in contract.schema()]
    if unknown:
        problems.append(Problem(", ".join(unknown[:5]), "unknown column, ignored", 0, ""))
    exprs: list[pl.Expr] = [
        pl.col("cell_id").cast(pl.String),
        pl.col("ts").dt.convert_time_zone("UTC").dt.cast_time_unit("us"),
    ]
    unparsable: list[pl.Expr] = []
    for dim in contract.DIMENSIONS:
        exprs.append(
            pl.col(dim).cast(pl.String)
            if dim in raw.columns
            else pl.lit(None, pl.String).alias(dim)
        )
    for name in contract.MEASUREMENT_NAMES:
        if name not in raw.columns:
            exprs.append(pl.lit(None, pl.Float64).alias(name))
            continue
        as_float = pl.col(name).cast(pl.Float64, strict=False)
        exprs.append(as_float)
        if not raw.schema[name].is_numeric():
            unparsable.append(
                (pl.col(name).is_not_null() & as_float.is_null()).alias(f"{UNPARSABLE}{name}")
            )
    out = raw.select(*exprs, *unparsable, pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"))
    region = pl.col("region").fill_null(UNASSIGNED_REGION)
    return out.with_columns(
        pl.when(region == "").then(pl.lit(UNASSIGNED_REGION)).otherwise(region).alias("region")
    ), problems


def _rules(settings: Settings, now: datetime) -> list[tuple[str, str, pl.Expr]]:
    """(column, rule, expression true where the rule is broken)."""
    rop = settings.rop_minutes
    rules: list[tuple[str, str, pl.Expr]] = [
        (
            "cell_id",
            "missing or empty cell_id",
            pl.col("cell_id").is_null() | (pl.col("cell_id").str.strip_chars() == ""),
        ),
        ("ts", "missing ts", pl.col("ts").is_null()),
        (
            "ts",
            f"not aligned to the {rop}-minute ROP",
            (pl.col("ts").dt.epoch("s") % (rop * 60)) != 0,
        ),
        (
            "ts",
            f"more than {settings.ingest.future_tolerance_minutes} min in the future",
            pl.col("ts") > now + timedelta(minutes=settings.ingest.future_tolerance_minutes),
        ),
        (
            "ts",
            f"older than the {settings.ingest.retention_days}-day retention",
            pl.col("ts") < now - timedelta(days=settings.ingest.retention_days),
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
    tol = 1 + settings.ingest.succ_tolerance
    for succ, att in contract.SUCCESS_PAIRS:
        rules.append((succ, f"{succ} > {att}", pl.col(succ) > pl.col(att) * tol))
    if settings.regions:
        allowed = sorted(settings.regions)
        rules.append(
            (
                "region",
                f"region not held by this installation (allowed: {allowed})",
                ~pl.col("region").is_in(allowed),
            )
        )
    return rules


def validate(
    df: pl.DataFrame, settings: Settings, now: datetime
) -> tuple[pl.DataFrame, pl.DataFrame, list[Problem]]:
    """Split conformed rows into (good, bad) and list every problem of the file at once.

    `bad` keeps the row number in the source file and a `reason` naming every rule it broke.
    Every rule is first evaluated as a cheap boolean over all rows; reasons are spelled out
    only for the (usually few) rows that broke one.
    """
    rules = _rules(settings, now)
    marks = [c for c in df.columns if c.startswith(UNPARSABLE)]
    rules += [(c.removeprefix(UNPARSABLE), "not a number", pl.col(c)) for c in marks]
    broken = df.select(b.fill_null(False).alias(f"_r{i}") for i, (_, _, b) in enumerate(rules))
    bad_mask = broken.select(pl.any_horizontal(pl.all())).to_series()
    clean = df.drop(marks)
    good = clean.filter(~bad_mask)
    bad_flags = broken.filter(bad_mask)
    bad = clean.filter(bad_mask)
    problems: list[Problem] = []
    if bad.height:
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
                first = bad.filter(bad_flags[f"_r{i}"]).row(0, named=True)
                problems.append(
                    Problem(
                        column,
                        rule,
                        int(counts[i]),
                        f"row {first['_row']}, cell {first['cell_id']}, ts {first['ts']}",
                    )
                )
    else:
        bad = bad.with_columns(pl.lit(None, pl.String).alias("reason"))
    # A key delivered twice in one file: the later row is the correction and wins.
    unique_keys = good.select(pl.struct("cell_id", "ts").n_unique()).item()
    if unique_keys < good.height:
        dup = good.filter(pl.struct("cell_id", "ts").is_duplicated())
        first = dup.row(0, named=True)
        problems.append(
            Problem(
                "cell_id, ts",
                "duplicate key in file; last row kept",
                good.height - unique_keys,
                f"cell {first['cell_id']} at {first['ts']}",
            )
        )
        good = good.unique(["cell_id", "ts"], keep="last", maintain_order=True)
    return good, bad, problems


def merge_rows(existing: pl.DataFrame, incoming: pl.DataFrame) -> pl.DataFrame:
    """Rows of one partition after a delivery: a re-delivered (cell_id, ts) replaces the old
    row (last delivery wins), nothing is duplicated, rows are sorted by (cell_id, ts)."""
    combined = pl.concat([existing, incoming], how="vertical") if existing.height else incoming
    # A stable sort keeps deliveries in order within a key, so the last row of each key run
    # is the latest delivery; comparing neighbours is far cheaper than hashing every key.
    ordered = combined.sort("cell_id", "ts", maintain_order=True)
    next_differs = (pl.col("cell_id") != pl.col("cell_id").shift(-1)) | (
        pl.col("ts") != pl.col("ts").shift(-1)
    )
    return ordered.filter(next_differs.fill_null(True))


def format_report(source: Path, result: FileResult) -> str:
    """A quarantine report a person can read."""
    lines = [
        f"cellpulse ingest report for {source}",
        f"status: {result.status}",
        f"rows read: {result.rows_in}, accepted: {result.rows_accepted}, "
        f"quarantined: {result.rows_quarantined}",
    ]
    if result.reason:
        lines.append(f"reason: {result.reason}")
    if result.problems:
        lines.append("")
        lines.append("problems (column | rule | rows | first example):")
        lines += [f"  {p.column} | {p.rule} | {p.rows} | {p.example}" for p in result.problems]
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
    kpi = lake.Dataset(settings.lake_dir / "kpi")
    results: list[FileResult] = []
    written = _Written()
    with Ledger(settings.ledger_path) as ledger:
        pending: list[tuple[FileResult, FileRecord, pl.DataFrame]] = []
        pending_rows = 0
        this_run: dict[str, str] = {}  # content hashes read in this run, not yet in the ledger
        for path in progress.track(list_landing_files(paths), "ingest: reading files"):
            result, record, good = _read_one(path, settings, now, ledger, force, this_run, mapping)
            results.append(result)
            if good is None:
                if record is not None:
                    ledger.record([record])
                    if record.status == "duplicate":
                        _archive([path], settings)
                continue
            # Batches bound memory for a backlog of any size; each is recorded in the ledger
            # once its partitions are safely written. A batch ends where a new day starts, so
            # a day is merged and rewritten once, not once per batch that touched it; a hard
            # cap keeps files that each span many days from growing a batch without end.
            if pending and (
                (pending_rows >= settings.ingest.batch_rows and _starts_later_day(good, pending))
                or pending_rows >= 4 * settings.ingest.batch_rows
            ):
                _flush(pending, kpi, ledger, written)
                _archive([r.path for r, _, _ in pending], settings)
                pending, pending_rows = [], 0
            pending.append((result, record, good))  # type: ignore[arg-type]
            pending_rows += good.height
        _flush(pending, kpi, ledger, written)
        _archive([r.path for r, _, _ in pending], settings)
    return IngestSummary(
        results,
        written.partitions,
        sorted(written.days),
        kpi.root,
        settings.quarantine_dir,
        written.replaced,
    )


def _starts_later_day(
    good: pl.DataFrame, pending: list[tuple[FileResult, FileRecord, pl.DataFrame]]
) -> bool:
    """Whether every row of `good` falls on a later day than every pending row."""
    if good.is_empty():
        return True
    newest = [cast(datetime, g["ts"].max()) for _, _, g in pending if g.height]
    return not newest or cast(datetime, good["ts"].min()).date() > max(newest).date()


def _archive(paths: Iterable[Path], settings: Settings) -> None:
    """With `ingest.after: archive`, move files whose rows are safely in the lake (and in the
    ledger) out of the landing folder, keeping their path below it. Content is untouched."""
    if settings.ingest.after != "archive":
        return
    landing = settings.landing_dir.resolve()
    for path in paths:
        source = path.resolve()
        relative = source.relative_to(landing) if source.is_relative_to(landing) else source.name
        target = settings.archive_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, target)


def _read_one(
    path: Path,
    settings: Settings,
    now: datetime,
    ledger: Ledger,
    force: bool,
    this_run: dict[str, str],
    mapping: Mapping | None,
) -> tuple[FileResult, FileRecord | None, pl.DataFrame | None]:
    sha = file_sha256(path)
    size = path.stat().st_size
    previous = this_run.get(sha) or ledger.seen(sha)
    if previous is None or force:
        result, record, good = _validate_one(path, sha, size, settings, now, mapping)
        this_run[sha] = result.status
        return result, record, good
    if ledger.has(sha, str(path)):  # this very file, seen before
        return FileResult(path, "skipped", reason=f"already {previous}"), None, None
    # The same content under another name: a duplicated delivery.
    reason = f"same content as a file already {previous}"
    return (
        FileResult(path, "duplicate", reason=reason),
        FileRecord(sha, str(path), size, "duplicate", 0, 0, 0, reason),
        None,
    )


def _validate_one(
    path: Path, sha: str, size: int, settings: Settings, now: datetime, mapping: Mapping | None
) -> tuple[FileResult, FileRecord, pl.DataFrame | None]:
    """Read, conform and validate one new file; quarantine what breaks the contract."""
    try:
        conformed, problems = conform(read_input(path, settings, mapping), str(path))
    except (ContractError, MappingError) as exc:
        result = FileResult(path, "rejected", reason=str(exc))
        _write_quarantine(settings, path, result, None)
        return result, FileRecord(sha, str(path), size, "rejected", 0, 0, 0, str(exc)), None
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
        _write_quarantine(settings, path, result, bad)
        return (
            result,
            FileRecord(
                sha,
                str(path),
                size,
                "rejected",
                conformed.height,
                0,
                conformed.height,
                result.reason,
            ),
            None,
        )
    if bad.height or result.problems:
        _write_quarantine(settings, path, result, bad if bad.height else None)
    record = FileRecord(sha, str(path), size, "ingested", conformed.height, good.height, bad.height)
    return result, record, good.drop("_row")


def _write_quarantine(
    settings: Settings, path: Path, result: FileResult, bad: pl.DataFrame | None
) -> None:
    qdir = settings.quarantine_dir
    stem = path.name
    lake.atomic_write_bytes(qdir / f"{stem}.report.txt", format_report(path, result).encode())
    failpoints.hit("ingest.quarantine_report_written")
    if bad is not None and bad.height:
        lake.atomic_write_parquet(bad, qdir / f"{stem}.rows.parquet")


@dataclass
class _Written:
    """What the batches of one ingest run wrote."""

    partitions: int = 0
    replaced: int = 0
    days: set[date] = field(default_factory=set)


def _flush(
    pending: list[tuple[FileResult, FileRecord, pl.DataFrame]],
    kpi: lake.Dataset,
    ledger: Ledger,
    written: _Written,
) -> None:
    """Merge a batch of accepted rows into their partitions, then record the batch's files.

    Partitions are written before the ledger: a crash in between means the files are read
    again next time, and merging the same rows twice gives the same partitions.
    """
    if not pending:
        return
    frames = [good for _, _, good in pending if good.height]
    days: set[date] = set()
    if frames:
        batch = pl.concat(frames, how="vertical").with_columns(pl.col("ts").dt.date().alias("_day"))
        # A day is merged as a whole, over all its regions: a key re-delivered with another
        # region moves partitions instead of living in two.
        groups = batch.partition_by("_day", as_dict=True, include_key=False)
        for (day,), rows in progress.track(
            groups.items(), "ingest: writing partitions", total=len(groups)
        ):
            assert isinstance(day, date)
            existing = kpi.read(day, day)
            merged = merge_rows(existing, rows)
            written.replaced += existing.height + rows.height - merged.height
            written.partitions += len(kpi.replace_day(merged, day))
            failpoints.hit("ingest.partition_written")
            days.add(day)
    failpoints.hit("ingest.before_ledger")
    ledger.record([rec for _, rec, _ in pending], stale_days=days)
    written.days |= days
