"""How a dataset's partitions lie in folders and files: `date=/region=/` folders, a
compacted `part.parquet`, and `delta-<seq>/` folders of fragments, one per delivery."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

PART_FILE = "part.parquet"
DELTA_PREFIX = "delta-"
# A day being removed is renamed to this hidden prefix first (no reader lists it).
DROPPED_PREFIX = ".dropped-"
NAME_MAX = 255  # bytes in one folder name on the file systems a lake lives on
# Delta fragments are Arrow IPC as written (encoding costs next to nothing, and compaction
# rewrites them soon), or parquet where a landing file was adopted byte for byte.
FRAGMENT_SUFFIX = ".arrow"
FRAGMENT_SUFFIXES = (FRAGMENT_SUFFIX, ".parquet")


def region_dir_of(path: Path) -> Path:
    """The `region=...` folder of a part (`region=x/part.parquet`) or delta fragment
    (`region=x/delta-000001/f-00000.arrow`)."""
    return path.parent if path.parent.name.startswith("region=") else path.parent.parent


def region_of(path: Path) -> str:
    """The region a part or delta fragment belongs to."""
    return region_dir_of(path).name.removeprefix("region=")


def is_delta(path: Path) -> bool:
    """Whether a lake file is a delta fragment (not a compacted part)."""
    return path.parent.name.startswith(DELTA_PREFIX)


def delta_seq(fragment: Path) -> int:
    """The delivery sequence number of a delta fragment (`.../delta-000007/f-00000.arrow`)."""
    return int(fragment.parent.name.removeprefix(DELTA_PREFIX))


def fragments(paths: Iterable[Path]) -> Iterator[Path]:
    """The fragment files among `paths`, known by their suffix."""
    return (p for p in paths if p.suffix in FRAGMENT_SUFFIXES)
