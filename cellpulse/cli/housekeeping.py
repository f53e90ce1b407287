"""`cellpulse housekeeping`: compact idle KPI days and remove days past retention."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from cellpulse.cli.edge import command_settings, console, handles_errors
from cellpulse.cli.options import ConfigOpt, HomeOpt


@handles_errors
def housekeeping(
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print what would be done; change nothing."),
    ] = False,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Keep the lake's disk in bounds: compact KPI days that stopped receiving deliveries
    into compressed parquet, and remove whole days older than each dataset's retention
    (housekeeping.retention_days). Prints, per dataset, the days compacted and removed and
    the bytes before and after. The landing folder is never touched."""
    from cellpulse import housekeeping as hk

    settings = command_settings(home, config, must_exist=True)
    outcome = hk.housekeep(settings.layout, settings.housekeeping, datetime.now(UTC), dry_run)
    newest = outcome.plan.newest
    console.print(
        ("Dry run: nothing changed. " if dry_run else "")
        + (f"Retention counts back from {newest}." if newest else "No KPIs in the lake.")
    )
    for line in outcome.lines():
        console.print(f"  {line}")
