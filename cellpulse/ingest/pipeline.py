"""The read-ahead pipeline: landing files fingerprinted, then read, conformed and validated
on a few threads ahead of the writer, their outcomes handed on in delivery order."""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from pathlib import Path

import polars as pl

from cellpulse import echo
from cellpulse.errors import UNREADABLE, ContractError, MappingError
from cellpulse.ingest.batches import Accepted, accept
from cellpulse.ingest.reading import conform, read_mapped
from cellpulse.ingest.results import FileResult, Problem
from cellpulse.ingest.rules import RuleLimits
from cellpulse.ingest.validation import validate_rows
from cellpulse.lake import file_sha256
from cellpulse.ledger import FileRecord, Ledger
from cellpulse.mapping import Mapping

READ_THREADS = 3  # reading, hashing and validating release the GIL: overlap files on 2 cores
READ_AHEAD = 4  # files read ahead of the writers (bounds memory)


@dataclass(frozen=True)
class Reading:
    """What reading a new file needs: the rules' limits and the run's clock, the source
    mapping of a foreign export (None: contract-shaped parquet), and whether a bad row
    rejects its whole file (`ingest.bad_rows`)."""

    limits: RuleLimits
    now: datetime
    mapping: Mapping | None
    bad_rows: str

    @property
    def key(self) -> str:
        """How files are read, as the ledger keys it: the mapping's fingerprint ('' none)."""
        return self.mapping.fingerprint if self.mapping is not None else ""


@dataclass
class Outcome:
    """What reading one landing file decided; written to the lake and ledger in order."""

    result: FileResult
    record: FileRecord | None
    good: Accepted | None = None
    quarantined: pl.DataFrame | None = None
    report: bool = False  # write a quarantine report for this file


def read_ahead(
    files: list[Path], reading: Reading, ledger: Ledger, force: bool, pool: ThreadPoolExecutor
) -> Iterator[Outcome]:
    """Outcomes of `files` in delivery order, reading up to READ_AHEAD new files in parallel.

    Only new content is read: a file whose hash the ledger (or an earlier file of this run)
    already holds is skipped, or recorded as a duplicate if it arrived under another name.
    """
    ahead: deque[tuple[str, Callable[[], Outcome]]] = deque()
    first_status: dict[str, str] = {}  # hash -> outcome of its first file in this run
    claimed: set[str] = set()
    key = reading.key
    for path, (sha, size) in zip(files, pool.map(_fingerprint, files), strict=True):
        previous = ledger.seen(sha, key)
        if sha not in claimed and (previous is None or force):
            claimed.add(sha)
            task = pool.submit(_validate_one, path, sha, size, reading)
            ahead.append((sha, task.result))
        else:
            ahead.append(
                (sha, partial(_seen_before, path, sha, size, previous, ledger, first_status, key))
            )
        while len(ahead) > READ_AHEAD:
            yield _settle(ahead.popleft(), first_status)
    while ahead:
        yield _settle(ahead.popleft(), first_status)


def _settle(item: tuple[str, Callable[[], Outcome]], first_status: dict[str, str]) -> Outcome:
    sha, get = item
    outcome = get()
    first_status.setdefault(sha, outcome.result.status)
    return outcome


def _fingerprint(path: Path) -> tuple[str, int]:
    """A file's content hash and size; a link's are of the link itself."""
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
    key: str,
) -> Outcome:
    status = first_status.get(sha) or previous
    if ledger.has(sha, str(path), key):  # this very file, seen before
        return Outcome(FileResult(path, "skipped", reason=f"already {status}"), None)
    # The same content under another name: a duplicated delivery.
    reason = f"same content as a file already {status}"
    return Outcome(
        FileResult(path, "duplicate", reason=reason),
        FileRecord(sha, str(path), size, "duplicate", 0, 0, 0, reason, key),
    )


def _validate_one(path: Path, sha: str, size: int, reading: Reading) -> Outcome:
    """Read, conform and validate one new file (pure: the caller writes what it decides).

    Whatever reading, conforming or validating the file raises rejects this file with the
    reason; the other files of the run go on."""
    try:
        return _decide(path, sha, size, reading)
    except (ContractError, MappingError) as exc:
        reason = echo.shown(exc)
    except UNREADABLE as exc:  # a file no rule foresaw (e.g. a type polars cannot convert)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        reason = echo.shown(
            f"{path}: cannot be read as KPI rows ({type(exc).__name__}: {first}); fix the "
            "export or move the file out of the landing folder"
        )
    result = FileResult(path, "rejected", reason=reason)
    return Outcome(
        result,
        FileRecord(sha, str(path), size, "rejected", 0, 0, 0, reason, reading.key),
        report=True,
    )


def _decide(path: Path, sha: str, size: int, reading: Reading) -> Outcome:
    """What becomes of one new file's rows; raises if the file cannot be read as rows."""
    if path.is_symlink():
        raise ContractError(
            f"{path}: a symbolic link; landing takes regular files only, so that nothing "
            "outside it is read or moved (copy the file into the landing folder instead)"
        )
    mapped = read_mapped(path, reading.mapping, reading.limits.rop_minutes)
    raw = mapped.rows
    conformed, problems = conform(raw, str(path))
    problems = [Problem(n.column, n.rule, n.rows, n.example) for n in mapped.notes] + problems
    good, bad, row_problems = validate_rows(conformed, reading.limits, reading.now)
    result = FileResult(
        path,
        "ingested",
        rows_in=conformed.height,
        rows_accepted=conformed.height - bad.height,  # a row superseded in-file still counts
        rows_quarantined=bad.height,
        problems=problems + row_problems,
    )
    if bad.height and reading.bad_rows == "reject_file":
        return _rejected_whole(result, sha, size, bad, reading.key)
    record = FileRecord(
        sha,
        str(path),
        size,
        "ingested",
        conformed.height,
        good.height,
        bad.height,
        None,
        reading.key,
    )
    accepted = accept(good.drop("_row"), mapped.carried)
    if len(accepted.parts) == 1 and reading.mapping is None and _unchanged(raw, good):
        # A file already exactly in the lake's shape, one partition, every row accepted as
        # it is, is copied into the lake instead of re-encoded (see DeltaStream.adopt).
        accepted = replace(accepted, adopt=(path, sha))
    return Outcome(
        result,
        record,
        good=accepted,
        quarantined=bad if bad.height else None,
        report=bool(bad.height or result.problems),
    )


def _rejected_whole(
    result: FileResult, sha: str, size: int, bad: pl.DataFrame, key: str
) -> Outcome:
    """A file with bad rows under the policy reject_file: none of its rows is accepted."""
    result.status = "rejected"
    result.reason = (
        f"{bad.height} of {result.rows_in} rows break the contract "
        "(policy reject_file); see the report"
    )
    result.rows_accepted, result.rows_quarantined = 0, result.rows_in
    record = FileRecord(
        sha,
        str(result.path),
        size,
        "rejected",
        result.rows_in,
        0,
        result.rows_in,
        result.reason,
        key,
    )
    return Outcome(result, record, quarantined=bad, report=True)


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
