"""Options that several commands take, declared once so their help reads the same."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="cellpulse home folder (landing, lake, MLflow store, ops store). "
        "Default: ./.cellpulse or $CELLPULSE_HOME.",
        show_default=False,
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="YAML settings file (env CELLPULSE_* and flags override it).",
        show_default=False,
    ),
]
MappingOpt = Annotated[
    str | None,
    typer.Option(
        "--mapping",
        help="Source mapping for foreign exports: a YAML file or a shipped mapping's name "
        "(see `cellpulse mapping list`). Default: contract-shaped parquet.",
        show_default=False,
    ),
]
LabelsOpt = Annotated[
    Path | None,
    typer.Option(
        help="Labelled events (cell_id, start, end, type[, kind: fault|load]), parquet or CSV. "
        "Default: <home>/ground_truth/events.parquet if present.",
        show_default=False,
    ),
]
FromOpt = Annotated[
    datetime | None,
    typer.Option(
        "--from", formats=["%Y-%m-%d"], help="First day (YYYY-MM-DD, UTC).", show_default=False
    ),
]
ToOpt = Annotated[
    datetime | None,
    typer.Option(
        "--to",
        formats=["%Y-%m-%d"],
        help="Last day, inclusive (YYYY-MM-DD, UTC).",
        show_default=False,
    ),
]
PathsArg = Annotated[
    list[Path] | None,
    typer.Argument(help="Files or folders to ingest. Default: <home>/landing.", show_default=False),
]
