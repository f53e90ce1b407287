"""Commands that run or watch the installation: `ui`, `serve`, `monitor`, `labels` and
`api`."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cellpulse.cli.edge import command_settings, console, handles_errors, table
from cellpulse.cli.options import ConfigOpt, HomeOpt
from cellpulse.cli.reports import mlflow_ui_url, print_monitoring
from cellpulse.errors import CellpulseError
from cellpulse.runtime import run_server
from cellpulse.window import DayWindow


@handles_errors
def ui(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Open the MLflow UI on this home's runs and registry (127.0.0.1, telemetry off)."""
    settings = command_settings(home, config, must_exist=True)
    mlflow_exe = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    cmd = [
        mlflow_exe,
        "server",
        "--backend-store-uri",
        settings.tracking_uri,
        "--default-artifact-root",
        settings.layout.mlartifacts.as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    console.print(
        f"MLflow UI on {mlflow_ui_url(port)} (runs in the model-training view; Ctrl-C to stop)"
    )
    raise typer.Exit(run_server(cmd, os.environ.copy(), settings.home))


@handles_errors
def prefect_ui(
    port: Annotated[
        int,
        typer.Option(envvar="PREFECT_SERVER_PORT", help="Port on 127.0.0.1."),
    ] = 4200,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Open the Prefect UI on this home's flow runs: every run of `demo`, `run` and the stage
    commands (their logs, artifacts such as the scores and the drift picture), served from
    the home's Prefect database on 127.0.0.1, telemetry off."""
    from cellpulse.runtime import prefect_ui_server

    settings = command_settings(home, config, must_exist=True)
    cmd, env = prefect_ui_server("127.0.0.1", port)
    console.print(
        f"Prefect UI on http://127.0.0.1:{port} for the runs in {env['PREFECT_HOME']} "
        "(Ctrl-C to stop)"
    )
    raise typer.Exit(run_server(cmd, env, settings.home))


@handles_errors
def serve(home: HomeOpt = None, config: ConfigOpt = None) -> None:
    """Register the scheduled deployments with a Prefect server and run them until stopped:
    ingest+score every ROP, features daily, training weekly, monitoring daily (schedules in
    settings `schedules.*`), housekeeping daily (`housekeeping.cron`). Needs a real Prefect
    server: see infra/ and PREFECT_API_URL."""
    settings = command_settings(home, config, must_exist=True)
    api_url = os.environ.get("PREFECT_API_URL")
    if not api_url:
        raise CellpulseError(
            "`cellpulse serve` needs a Prefect server: start one (infra/prefect-server.sh, or "
            "`prefect server start`), then set PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    from prefect import serve as prefect_serve

    from cellpulse.flows.deployments import build_deployments, ensure_training_limit, schedules

    deployments = build_deployments(settings, config)
    ensure_training_limit()
    console.print(
        table(
            f"cellpulse deployments on {api_url} (Ctrl-C to stop)",
            ["deployment", "schedule"],
            [(name, _describe(schedule)) for name, schedule in schedules(settings).items()],
        )
    )
    prefect_serve(*deployments, print_starting_message=False)


def _describe(schedule: Any) -> str:
    if schedule is None:
        return "not scheduled (run on demand)"
    if getattr(schedule, "cron", None):
        return f"cron {schedule.cron} ({schedule.timezone or 'UTC'})"
    return f"every {schedule.interval}"


@handles_errors
def monitor(
    retrain: Annotated[
        bool | None,
        typer.Option(
            "--retrain/--no-retrain",
            help="Retrain when a check is crossed (default: monitor.retrain_on_drift).",
            show_default=False,
        ),
    ] = None,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Check whether the network changed under the champion: feature drift (PSI) against its
    training window, counters that stopped reporting, cells appearing or disappearing, score
    distribution shift, and recall on labelled faults. Logged to Prefect and MLflow
    (experiment cellpulse-monitoring); a crossed threshold retrains."""
    settings = command_settings(
        home,
        config,
        must_exist=True,
        flows=True,
        check=lambda s: DayWindow().resolve(
            s.layout.features.dates(), "features to monitor", "run `cellpulse features`"
        ),
    )
    if retrain is not None:
        settings = settings.model_copy(
            update={"monitor": settings.monitor.model_copy(update={"retrain_on_drift": retrain})}
        )
    from cellpulse.flows.monitor import monitor_flow

    print_monitoring(monitor_flow(settings))


@handles_errors
def labels(
    out: Annotated[
        Path | None,
        typer.Option(help="File to write (parquet). Default: <home>/labels/operator.parquet."),
    ] = None,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Export people's verdicts on alerts as a labels file for `train --labels` and
    `evaluate --labels`: acknowledged or closed alerts as confirmed faults (kind fault),
    false alarms as kind false_alarm (not events, kept for reference)."""
    from cellpulse import lake
    from cellpulse.opsstore import open_ops_store, ops_store_location
    from cellpulse.publish import verdicts_as_events

    settings = command_settings(home, config, must_exist=True)
    with open_ops_store(settings, read_only=True) as store:
        verdicts = store.feedback_labels()
    events = verdicts_as_events(verdicts)
    target = out or settings.layout.operator_labels
    lake.atomic_write_parquet(events, target)
    confirmed = int((events["kind"] == "fault").sum())
    console.print(
        f"labels: {confirmed} confirmed event(s) and {events.height - confirmed} false "
        f"alarm(s) from {ops_store_location(settings)} -> {target}\n"
        f"use them with: cellpulse evaluate --labels {target}"
    )


@handles_errors
def api(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default: api.host, 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: api.port, 8750).")] = None,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the ops web page and HTTP API: ranked cells, a cell's KPIs and scores, alerts
    (acknowledge, close, false alarm), models in use. Every /api/ route needs the bearer
    token: api.token (CELLPULSE_API__TOKEN, at least 32 characters), or else the one kept in
    <home>/api_token (made on first start, readable by its owner only)."""
    import uvicorn

    from cellpulse.api import create_app

    settings = command_settings(home, config, must_exist=True)
    bind_host = host or settings.api.host
    bind_port = port or settings.api.port
    web_app = create_app(settings)
    token_source = (
        "api.token setting" if settings.api.token is not None else str(settings.layout.api_token)
    )
    console.print(
        f"cellpulse ops page and API on http://{bind_host}:{bind_port}/ "
        f"(OpenAPI schema: /openapi.json); bearer token in {token_source}. Ctrl-C to stop."
    )
    uvicorn.run(web_app, host=bind_host, port=bind_port, log_level="warning")
