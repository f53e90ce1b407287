"""Commands that bring data in: `simulate`, `ingest` and `mapping list|check`."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from cellpulse.cli.edge import command_settings, console, handles_errors, table
from cellpulse.cli.options import ConfigOpt, HomeOpt, MappingOpt, PathsArg
from cellpulse.cli.reports import print_ingest, print_simulation
from cellpulse.errors import CellpulseError
from cellpulse.settings import Settings
from cellpulse.simulator.config import EVENT_TYPES


@handles_errors
def simulate(
    cells: Annotated[int, typer.Option(help="Number of cells (3 sectors per site).", min=1)] = 200,
    days: Annotated[int, typer.Option(help="Days to simulate.", min=1)] = 14,
    start: Annotated[
        datetime, typer.Option(formats=["%Y-%m-%d"], help="First day (UTC).")
    ] = datetime(2026, 1, 5),
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same files.")] = 7,
    rop_minutes: Annotated[int, typer.Option(help="ROP length: 5, 15 or 60 minutes.")] = 15,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Landing folder to write to. Default: <home>/landing.", show_default=False
        ),
    ] = None,
    events_per_cell_day: Annotated[
        float, typer.Option(help="Injected events per cell-day.", min=0)
    ] = 0.012,
    event_weight: Annotated[
        list[str] | None,
        typer.Option(
            help="Relative rate of one event type, TYPE=WEIGHT (repeatable; 0 turns "
            "a type off). Types: "
            + ", ".join(EVENT_TYPES)
            + " (level_shift and slow_degradation are 0 unless weighted).",
            show_default=False,
        ),
    ] = None,
    realistic_delivery: Annotated[
        bool,
        typer.Option(
            help="Deliver like a real OSS feed: some ROPs missing, some files late, "
            "twice, or first wrong and later corrected."
        ),
    ] = False,
    holiday: Annotated[
        list[datetime] | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="A public holiday (loads like a Sunday); repeat for several.",
            show_default=False,
        ),
    ] = None,
    kpis: Annotated[
        str,
        typer.Option(
            help="Measurements the export delivers: all, prb_volume (prb_util_dl_pct, "
            "dl_volume_mbit), volume_users (dl_volume_mbit, rrc_conn_mean) or "
            "comma-separated contract measurements."
        ),
    ] = "all",
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Simulate a RAN and write its PM files into the landing folder.

    One parquet file per hour, as an OSS export delivers them, plus ground truth (injected
    events, congestion periods, topology) under <home>/ground_truth."""
    from cellpulse.simulator import DeliveryConfig, SimulationConfig, write_network
    from cellpulse.simulator.config import parse_event_weights, parse_kpis

    try:
        weights = parse_event_weights(event_weight or [])
        measurements = parse_kpis(kpis)
    except ValueError as exc:
        raise CellpulseError(str(exc)) from None
    settings = command_settings(home, config, rop_minutes=rop_minutes)
    cfg = SimulationConfig(
        cells=cells,
        days=days,
        start=start.date(),
        seed=seed,
        rop_minutes=settings.rop_minutes,
        events_per_cell_day=events_per_cell_day,
        event_weights=weights,
        holidays=tuple(h.date() for h in holiday or []),
        delivery=DeliveryConfig.realistic() if realistic_delivery else DeliveryConfig(),
        kpis=measurements,
    )
    t0 = time.perf_counter()
    summary = write_network(
        cfg, out or settings.layout.landing, settings.layout.ground_truth, settings.congestion
    )
    print_simulation(summary, cfg.start, time.perf_counter() - t0)
    console.print(
        "KPIs written: "
        + (", ".join(measurements) if measurements is not None else "all contract measurements")
    )


@handles_errors
def ingest(
    paths: PathsArg = None,
    force: Annotated[bool, typer.Option(help="Re-read files already in the ledger.")] = False,
    mapping: MappingOpt = None,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Validate landing files and merge them into lake/kpi.

    Bad rows go to quarantine/ with a report; the same file twice changes nothing; a
    corrected re-delivery replaces the rows it corrects."""
    settings = command_settings(
        home, config, flows=True, check=lambda s: landing_targets(s, paths, mapping)
    )
    from cellpulse.flows.ingest import ingest_flow

    targets = landing_targets(settings, paths, mapping)
    summary = ingest_flow(settings, targets, force, mapping)
    print_ingest(summary)
    fail_on_rejected(summary)


def landing_targets(
    settings: Settings, paths: list[Path] | None, mapping: str | None
) -> list[Path]:
    """What to ingest, checked before any flow starts: the folders exist and hold files,
    and the mapping (if any) loads."""
    from cellpulse.ingest import list_landing_files
    from cellpulse.mapping import load_mapping

    if mapping:
        load_mapping(mapping)
    targets = paths or [settings.layout.landing]
    if not paths and not settings.layout.landing.is_dir():
        raise CellpulseError(
            f"landing folder {settings.layout.landing} does not exist; put PM "
            "files there or run `cellpulse simulate`"
        )
    if not list_landing_files(targets):
        raise CellpulseError(f"no files in {', '.join(map(str, targets))}; nothing to ingest")
    return targets


def fail_on_rejected(summary: Any) -> None:
    """A run that rejected files, or refused every row it read, fails (status 2), naming
    the first file and why, or the top reasons."""
    if summary.all_refused:
        raise CellpulseError(summary.refused_line())
    if summary.rejected:
        first = summary.rejected[0]
        more = f" (and {len(summary.rejected) - 1} more)" if len(summary.rejected) > 1 else ""
        raise CellpulseError(f"rejected {first.reason}{more}")


mapping_app = typer.Typer(
    help="Source mappings for foreign PM exports (docs/mappings.md).", no_args_is_help=True
)


@mapping_app.command("list")
@handles_errors
def mapping_list() -> None:
    """The mappings shipped with cellpulse (usable by name with --mapping)."""
    from cellpulse.mapping import load_mapping, shipped_mappings

    for name in shipped_mappings():
        console.print(f"{name}: {load_mapping(name).description}")


@mapping_app.command("check")
@handles_errors
def mapping_check(
    mapping: Annotated[str, typer.Argument(help="Mapping YAML file or shipped name.")],
    sample: Annotated[Path, typer.Argument(help="A sample export file to map.")],
    rows: Annotated[int, typer.Option(help="Mapped rows to show.", min=1)] = 5,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Map a sample file: show the first mapped rows, every problem and the KPI coverage.

    Nothing is ingested."""
    from cellpulse.ingest import check_sample
    from cellpulse.mapping import load_mapping

    settings = command_settings(home, config)
    source = load_mapping(mapping)
    if not sample.is_file():
        raise CellpulseError(f"{sample}: no such file")
    check = check_sample(sample, settings, source)
    shown = check.rows.head(rows)
    console.print(
        f"mapping {source.name} on {sample}: {check.rows.height} rows, "
        f"{check.good.height} valid, {check.bad.height} with problems"
    )
    console.print(f"  {check.coverage.line()}")
    console.print(
        table(
            "First mapped rows (transposed)",
            ["column", *map(str, range(shown.height))],
            [[c, *shown[c].to_list()] for c in shown.columns],
        )
    )
    problems = check.problems
    if problems:
        console.print(
            table(
                "Problems",
                ["column", "rule", "rows", "first example"],
                [[p.column, p.rule, p.rows, p.example] for p in problems],
            )
        )
    else:
        console.print("no problems")
