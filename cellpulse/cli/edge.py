"""What every command shares at the edge: the consoles, settings resolution, turning a
CellpulseError into one line, progress bars and tables."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cellpulse import progress
from cellpulse.errors import CellpulseError
from cellpulse.runtime import configure_process, start_prefect_server
from cellpulse.settings import Settings, load_settings

# Wide enough for the score tables when output goes to a file or a CI log.
console = Console(stderr=False, width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True)
T = TypeVar("T")


class RichReporter:
    """Progress bars for the core's long loops."""

    def track(self, items: Iterable[T], description: str, total: int | None) -> Iterator[T]:
        """Yield `items`, advancing a bar on stderr (a list is made first if `total` is None)."""
        items = list(items) if total is None else items
        total = total if total is not None else len(items)  # type: ignore[arg-type]
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err_console, transient=True) as bar:
            task = bar.add_task(description, total=total)
            for item in items:
                yield item
                bar.advance(task)


def handles_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a CellpulseError into one clear line and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CellpulseError as exc:
            # escaped: a message quotes file names, and "[/x]" in one is not markup
            err_console.print(
                f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from None

    return wrapper


def command_settings(
    home: Path | None,
    config: Path | None,
    must_exist: bool = False,
    flows: bool = False,
    tracking: bool = False,
    check: Callable[[Settings], object] | None = None,
    **overrides: Any,
) -> Settings:
    """Settings for a command, the process prepared for them.

    Everything a user can get wrong (settings, the home, the command's own arguments via
    `check`) is refused before the home is created or a server starts: a mistyped command
    fails in a moment and leaves nothing behind.

    Args:
        must_exist: refuse a home that is not there yet (commands that read what earlier
            commands stored).
        flows: the command runs Prefect flows (without PREFECT_API_URL, a temporary server
            that dies with us).
        tracking: the command reads or changes the model registry itself: MLflow is pointed
            at this home's store, once for the process (flows point it themselves).
        check: the command's checks of its arguments against the settings and the home
            (raising CellpulseError), run before anything is created or started.
        overrides: settings given as command flags, over the file and the environment.
    """
    settings = load_settings(config, home=home, **overrides)
    check_home(settings.home, must_exist)
    if check is not None:
        check(settings)
    settings.home.mkdir(parents=True, exist_ok=True)
    configure_process(settings)
    if flows:
        start_prefect_server(settings)
    if tracking:
        from cellpulse.models.tracking import configure  # imports MLflow: only when needed

        configure(settings)
    if sys.stderr.isatty():
        progress.set_reporter(RichReporter())
    return settings


def check_home(home: Path, must_exist: bool) -> None:
    """Refuse a home that is a file, one this user cannot write to, or (with `must_exist`)
    one that is not there yet; a new home's nearest existing folder must be writable."""
    if home.exists() and not home.is_dir():
        raise CellpulseError(f"cellpulse home {home} is a file, not a folder; pass --home a folder")
    if must_exist and not home.is_dir():
        raise CellpulseError(
            f"cellpulse home {home} does not exist; run `cellpulse demo`, or "
            "`cellpulse simulate` then `cellpulse ingest`, or pass --home to an existing one"
        )
    existing = next(p for p in (home, *home.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise CellpulseError(f"cannot create cellpulse home {home}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "home" if existing == home else f"home's folder {existing}"
        raise CellpulseError(
            f"cellpulse {what} is not writable by {actor()}; pass --home a folder you can "
            "write to, or fix its permissions"
        )


def check_labels(labels: Path | None) -> None:
    """A labels file given on the command line must be there (a typo would otherwise train
    or evaluate without labels, silently)."""
    if labels is not None and not labels.is_file():
        raise CellpulseError(
            f"labels file {labels} does not exist; pass an existing parquet or CSV file "
            "(cell_id, start, end, type), or leave --labels out to use the simulator's"
        )


def actor() -> str:
    """Who runs the command, for the record of a person's decision."""
    return os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown"


def table(title: str, columns: list[str], rows: Iterable[Iterable[Any]]) -> Table:
    """A rich table with every cell formatted by `fmt`."""
    out = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        out.add_column(c, overflow="fold")
    for row in rows:
        out.add_row(*[fmt(v) for v in row])
    return out


def fmt(value: Any) -> str:
    """A cell's text: NaN as a dash, whole numbers with thousands separators, other floats
    to three places, times to the minute, lists joined."""
    if isinstance(value, float):
        if value != value:
            return "–"
        return f"{int(value):,}" if value.is_integer() and abs(value) >= 1 else f"{value:.3f}"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    if isinstance(value, list):
        return ", ".join(value)
    return str(value)
