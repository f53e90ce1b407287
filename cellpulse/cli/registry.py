"""Commands on the model registry: `models`, `promote` and `rollback`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cellpulse.cli.edge import actor, command_settings, console, handles_errors, table
from cellpulse.cli.options import ConfigOpt, HomeOpt

ModelNameArg = Annotated[
    str, typer.Argument(help="anomaly or congestion (or its registered name).")
]
VERSION_COLUMNS = [
    "version",
    "aliases",
    "created (UTC)",
    "primary metric",
    "value",
    "run",
    "promotion decision",
]


@handles_errors
def models(
    history: Annotated[int, typer.Option(help="Champion moves to show per model.", min=0)] = 5,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List registered model versions, their aliases and hold-out metrics."""
    command_settings(home, config, must_exist=True, tracking=True)
    from cellpulse.models import tracking

    for family, name in tracking.MODEL_NAMES.items():
        versions = tracking.list_versions(family)
        if not versions:
            console.print(f"{name}: no versions yet (run `cellpulse train`)")
            continue
        rows = [
            [
                v.version,
                ", ".join(v.aliases) or "–",
                v.created,
                v.primary_metric,
                v.primary_value,
                v.run_id[:8],
                v.reason,
            ]
            for v in versions
        ]
        console.print(table(name, VERSION_COLUMNS, rows))
        moves = tracking.alias_history(family)[-history:] if history else []
        for m in moves:
            console.print(
                f"  {m['at'][:19]}  champion {m['from'] or '–'} -> {m['to']}  by "
                f"{m['by']}: {m['why']}",
                highlight=False,
            )


def _registry(home: Path | None, config: Path | None, name: str) -> tuple[Any, str]:
    """The tracking edge pointed at this home, and the model family `name` means."""
    command_settings(home, config, must_exist=True, tracking=True)
    from cellpulse.models import tracking

    return tracking, tracking.resolve_family(name)


@handles_errors
def promote(
    name: ModelNameArg,
    version: Annotated[str, typer.Argument(help="The version to make champion.")],
    reason: Annotated[
        str, typer.Option(help="Why; recorded with the alias move.")
    ] = "promoted by hand",
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Make a version the champion (a person's decision, recorded who/when/why)."""
    tracking, family = _registry(home, config, name)
    tracking.promote(family, version, reason, actor())
    console.print(f"{tracking.MODEL_NAMES[family]}@champion -> version {version} ({reason})")


@handles_errors
def rollback(
    name: ModelNameArg,
    reason: Annotated[
        str, typer.Option(help="Why; recorded with the alias move.")
    ] = "rolled back by hand",
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Give the champion alias back to the previous champion."""
    tracking, family = _registry(home, config, name)
    version = tracking.rollback(family, reason, actor())
    console.print(
        f"{tracking.MODEL_NAMES[family]}@champion -> version {version} ({reason}); "
        "run `cellpulse score` to re-score with it"
    )
