"""The landing folder: which files a run takes, and where an ingested file is archived."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from cellpulse.errors import NoDataError
from cellpulse.layout import Layout


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


def archive(paths: Iterable[Path], layout: Layout) -> None:
    """Move files whose rows are safely in the lake (and in the ledger) out of the landing
    folder into the archive, keeping their path below it (`ingest.after: archive`). Content
    is untouched."""
    for path in paths:
        if path.is_symlink():  # refused at reading; a link's target is never moved
            continue
        target = layout.archive / below_landing(path, layout)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)


def below_landing(path: Path, layout: Layout) -> Path:
    """`path` relative to the landing folder (its name alone if it lies elsewhere). Its
    folders are resolved, the file itself is not: a link is placed where the link is."""
    landing = layout.landing.resolve()
    source = path.parent.resolve() / path.name
    return source.relative_to(landing) if source.is_relative_to(landing) else Path(path.name)
