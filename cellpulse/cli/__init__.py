"""The `cellpulse` command line: one command per stage, plus `run` and `demo`.

Every command takes `--home DIR` (default ./.cellpulse, or CELLPULSE_HOME) and `--config FILE`.
Errors a user can fix print one line and exit with status 2; nothing already stored is harmed.

The commands live in modules by what they do (`data`, `pipeline`, `registry`, `operations`);
this module registers them, in the order `cellpulse --help` lists them. Each command imports
the heavy modules (Prefect, MLflow, LightGBM) it needs when it runs, so `--help` stays quick.
"""

from __future__ import annotations

import typer

from cellpulse.cli import data, operations, pipeline, registry
from cellpulse.cli.housekeeping import housekeeping

app = typer.Typer(
    name="cellpulse",
    help="On-premises ML for RAN cell KPIs: ingest PM files, build features, train LightGBM "
    "anomaly and congestion models (tracked in MLflow), and publish ranked scores for network "
    "operations. Start with `cellpulse demo`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for command in (
    data.simulate,
    data.ingest,
    pipeline.features,
    pipeline.train,
    pipeline.score,
    pipeline.evaluate,
    pipeline.run,
    pipeline.demo,
    registry.models,
    registry.promote,
    registry.rollback,
):
    app.command()(command)
app.add_typer(data.mapping_app, name="mapping")
for command in (
    operations.ui,
    operations.prefect_ui,
    pipeline.backtest,
    operations.serve,
    pipeline.backfill,
    operations.monitor,
    operations.labels,
    operations.api,
    housekeeping,
):
    app.command()(command)


def main() -> None:
    """The console script `cellpulse`."""
    app()
