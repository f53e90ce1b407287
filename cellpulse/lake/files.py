"""Durable file writes: a write goes to a hidden temporary file beside its target, is
fsynced, then renamed over it, so a crash leaves either the old file or the new one, never
half of one."""

from __future__ import annotations

import hashlib
import itertools
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import polars as pl
from polars.io.plugins import register_io_source

from cellpulse import failpoints


def temp_beside(path: Path) -> Path:
    """A fresh hidden temporary name beside `path`, after removing any left behind by a
    writer that was killed before its rename (one writer per path at a time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for orphan in path.parent.glob(f".{path.name}.*.tmp"):
        orphan.unlink(missing_ok=True)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers see the old content or the new, nothing between."""
    tmp = temp_beside(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write_parquet(
    df: pl.DataFrame | Iterable[pl.DataFrame],
    path: Path,
    metadata: Mapping[str, str] | None = None,
    fast: bool = False,
) -> None:
    """Write a parquet file atomically, with optional key/value metadata in its footer.

    zstd level 1 by default: most of zstd's size saving at a fraction of its default write
    time (figures in bench/RESULTS.md).

    Args:
        df: The rows; or an iterable of frames of one schema, written as they come (row
            groups in order) so that a file larger than memory can be produced chunk by
            chunk.
        path: The file to replace; its folder is created if need be.
        metadata: Key/value pairs for the file's footer (read back by `read_metadata`).
        fast: lz4 instead of zstd, for files soon rewritten or read far more often than
            kept: somewhat larger, written and read faster.
    """
    tmp = temp_beside(path)
    try:
        if isinstance(df, pl.DataFrame):
            df.write_parquet(
                tmp,
                compression="lz4" if fast else "zstd",
                compression_level=None if fast else 1,
                metadata=dict(metadata) if metadata else None,
            )
        else:
            _write_chunks(df, tmp, metadata, "lz4" if fast else "zstd")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        failpoints.hit("lake.before_rename")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def _write_chunks(
    chunks: Iterable[pl.DataFrame], path: Path, metadata: Mapping[str, str] | None, codec: str
) -> None:
    """Stream frames into one parquet file with polars' own (parallel) writer."""
    remaining = iter(chunks)
    first = next(remaining, None)
    if first is None:
        raise ValueError(f"no rows to write to {path}")
    failure: list[BaseException] = []

    def source(
        with_columns: list[str] | None, predicate: object, n_rows: int | None, batch: int | None
    ) -> Iterator[pl.DataFrame]:
        try:
            for chunk in itertools.chain([first], remaining):
                yield chunk if with_columns is None else chunk.select(with_columns)
        except BaseException as exc:  # re-raised as itself below, not as a polars error
            failure.append(exc)
            raise

    stream = register_io_source(source, schema=first.schema)
    try:
        stream.sink_parquet(
            path,
            compression="zstd" if codec == "zstd" else "lz4",
            compression_level=1 if codec == "zstd" else None,
            metadata=dict(metadata) if metadata else None,
        )
    except Exception:
        if failure:
            raise failure[0] from None
        raise


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's content (hex): what the ledger knows a delivery by."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def read_metadata(path: Path) -> dict[str, str]:
    """The key/value metadata written into a parquet file's footer, without the schema
    entry that Arrow adds itself."""
    raw = pl.read_parquet_metadata(path)
    return {k: v for k, v in raw.items() if not k.startswith("ARROW")}


def fsync_dir(directory: Path) -> None:
    """Make a folder's entries durable: a rename is only safe once its folder is synced."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Make a written file's content durable before it is published."""
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())
