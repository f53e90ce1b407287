"""The whole pipeline through real Prefect and real MLflow on a tiny simulated network."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import mlflow
import polars as pl
import pytest
from typer.testing import CliRunner

from cellpulse import lake
from cellpulse.cli import app
from cellpulse.errors import NoChampionError
from cellpulse.flows.evaluate import evaluate_flow
from cellpulse.flows.pipeline import pipeline_flow
from cellpulse.models import tracking
from cellpulse.models.scoreboard import HEADLINE
from cellpulse.publish import SCORE_COLUMNS
from cellpulse.simulator import build_topology, write_network
from tests.conftest import OUTAGE_CELL, TINY, outage_events, tiny_settings


def simulate_into(settings):
    topo = build_topology(TINY)
    events = outage_events(topo)
    write_network(
        TINY, settings.layout.landing, settings.layout.ground_truth, settings.congestion, events
    )
    return topo, events


def counts(settings) -> dict[str, int]:
    out = {
        name: lake.Dataset(settings.layout.lake / name).read().height
        for name in ("kpi", "features", "scores")
    }
    with duckdb.connect(str(settings.layout.ops_store), read_only=True) as con:
        for table in ("scores", "alerts"):
            out[f"ops_{table}"] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return out


def test_pipeline_end_to_end_and_idempotent(tmp_path):
    settings = tiny_settings(tmp_path / "home")
    topo, events = simulate_into(settings)
    result = pipeline_flow(settings)

    rows = TINY.cells * TINY.days * TINY.rops_per_day
    assert result.ingest.rows_accepted == rows
    assert result.features is not None and result.features.rows == rows
    assert result.train is not None
    assert result.score is not None and result.score.rows == rows

    scores = settings.layout.scores.read()
    assert scores.columns == list(SCORE_COLUMNS)
    assert scores.height == rows
    assert scores.select("cell_id", "ts").is_duplicated().sum() == 0

    # The injected outage cell is the worst cell of the outage day.
    ev = events.row(0, named=True)
    day = scores.filter(pl.col("ts").dt.date() == ev["start"].date())
    ranking = (
        day.group_by("cell_id")
        .agg(pl.col("anomaly_score").max())
        .sort("anomaly_score", descending=True)
    )
    assert ranking["cell_id"][0] == topo.cell_id[OUTAGE_CELL]
    assert day.filter(pl.col("cell_id") == topo.cell_id[OUTAGE_CELL])["is_anomaly"].any()

    tracking.configure(settings)
    for family in ("anomaly", "congestion"):
        assert tracking.champion_version(family) == "1"
        champion = tracking.load_champion(family)
        assert champion.model.spec_hash == result.features.spec_hash
    assert set(scores["anomaly_model_version"]) == {"1"}
    client = mlflow.MlflowClient()
    for family, plot in (
        ("anomaly", "plots/worst_cells.png"),
        ("congestion", "plots/feature_importance.png"),
    ):
        run_id = result.train.logged[family].run_id
        names = {a.path for a in client.list_artifacts(run_id, "plots")}
        assert plot in names, names

    first = counts(settings)
    assert first["ops_scores"] == rows and first["ops_alerts"] >= 1

    evaluation = evaluate_flow(settings)
    assert evaluation.window[1] == TINY.start + timedelta(days=TINY.days - 1)
    assert evaluation.report.is_file()
    board = evaluation.board
    recall = board.filter(
        (pl.col("detector") == "model")
        & (pl.col("metric") == "event_recall")
        & (pl.col("slice_kind") == "all")
    )["value"].item()
    assert recall == 1.0  # the outage is inside the evaluated hold-out days
    # The evaluation is a run of its own, linked to the version and run that scored.
    run = mlflow.get_run(evaluation.logged_runs[0])
    trained = result.train.logged["anomaly"]
    assert run.data.tags["run.kind"] == "evaluation"
    assert run.info.experiment_id == trained.experiment_id
    assert run.data.tags["evaluation.training_run_id"] == trained.run_id
    assert run.data.tags["evaluation.model_version"] == "1"
    assert run.data.metrics["eval_event_recall"] == 1.0
    assert set(run.data.metrics) == {f"eval_{m}" for m in HEADLINE["anomaly"]} | {
        "eval_best_baseline_pr_auc"
    }
    tables = {a.path for a in client.list_artifacts(run.info.run_id, "scoreboard")}
    assert "scoreboard/scoreboard.csv" in tables
    # The training run keeps only what training logged: no scoreboard metrics.
    assert not [m for m in mlflow.get_run(trained.run_id).data.metrics if "scoreboard" in m]

    again = pipeline_flow(settings)
    assert again.ingest.count("skipped") == result.ingest.count("ingested")
    assert again.features is None and again.train is None and again.score is None
    assert counts(settings) == first


def test_scoring_without_a_champion_is_a_clear_error(tmp_path):
    settings = tiny_settings(tmp_path / "home")
    tracking.configure(settings)
    with pytest.raises(NoChampionError, match="run `cellpulse train`"):
        tracking.load_champion("anomaly")


def test_cli_commands_run_the_stages_and_explain_errors(tmp_path, restore_environ):
    runner = CliRunner()
    home = str(tmp_path / "home")

    missing = runner.invoke(app, ["features", "--home", home])
    assert missing.exit_code == 2
    assert "does not exist" in missing.output and "Traceback" not in missing.output

    sim = runner.invoke(app, ["simulate", "--cells", "6", "--days", "8", "--home", home])
    assert sim.exit_code == 0, sim.output
    assert "simulated 6 cells" in sim.output

    ing = runner.invoke(app, ["ingest", "--home", home])
    assert ing.exit_code == 0, ing.output
    assert "192 files ingested" in ing.output

    feats = runner.invoke(
        app, ["features", "--home", home, "--from", "2026-01-10", "--to", "2026-01-12"]
    )
    assert feats.exit_code == 0, feats.output
    assert "features: 3 days (2026-01-10 to 2026-01-12)" in feats.output

    nodata = runner.invoke(app, ["features", "--home", home, "--from", "2027-01-01"])
    assert nodata.exit_code == 2 and "no ingested KPIs between" in nodata.output

    # No champion yet: each family publishes its baseline's scores, marked as such.
    nochamp = runner.invoke(app, ["score", "--home", home])
    assert nochamp.exit_code == 0, nochamp.output
    assert "anomaly: baseline scores (per-cell z-score" in nochamp.output
    assert "congestion: baseline scores (current PRB utilisation" in nochamp.output
    assert "no model trained yet" in nochamp.output
    published = lake.Dataset(Path(home) / "lake" / "scores").read()
    assert published.height == 6 * 96
    assert set(published["anomaly_model"]) == {"baseline:zscore"}
    assert set(published["congestion_model"]) == {"baseline:prb_util"}
    assert set(published["anomaly_model_version"]) == {"baseline"}

    foreign = tmp_path / "foreign.parquet"
    pl.DataFrame({"CGI": ["x"], "PERIOD_START": ["2026-01-05"]}).write_parquet(foreign)
    bad = runner.invoke(app, ["ingest", "--home", home, str(foreign)])
    assert bad.exit_code == 2
    assert "missing key column(s) cell_id, ts" in bad.output and str(foreign) in bad.output


def test_every_rop_runs_publish_what_the_batch_publishes(tmp_path):
    """The every-ROP flow: a first run without state runs the daily stages and leaves one;
    later runs build, score and publish only the delivered ROPs, and what they publish is
    what the daily batch publishes for the same rows."""
    from datetime import UTC, datetime

    from cellpulse.flows.features import features_flow
    from cellpulse.flows.pipeline import rop_flow
    from cellpulse.flows.score import score_flow
    from cellpulse.opsstore import open_ops_store
    from cellpulse.simulator import iter_days, split_into_files

    settings = tiny_settings(tmp_path / "home")
    topo = build_topology(TINY)
    events = outage_events(topo)
    days = list(iter_days(TINY, topo, events))
    for _, frame in days[:-1]:
        for name, part in split_into_files(frame, 24 * 60):
            lake.atomic_write_parquet(part, settings.layout.landing / name)
    first = rop_flow(settings)
    assert first.how == "batch" and first.batch is not None and first.batch.score is not None

    last_day, frame = days[-1]
    files = dict(split_into_files(frame, 15))
    start = datetime.combine(last_day, datetime.min.time(), UTC)
    published = []
    for group in (["0900"], ["0915"], ["0930", "0945", "1000", "1015"], ["1030"]):
        drop = tmp_path / f"drop-{group[0]}"
        for name, part in files.items():
            if any(f".{hhmm}+0000-" in name for hhmm in group):
                lake.atomic_write_parquet(part, drop / name)
        run = rop_flow(settings, [drop])
        assert run.how == "rops", run.why
        assert run.rops is not None and run.rops.rops == len(group)
        published.append(run.rops)
    rop_scores = pl.concat([p.scores for p in published]).drop("scored_at")
    assert rop_scores["ts"].min() == start + timedelta(hours=9)
    assert (
        settings.layout.scores.read(last_day, last_day)
        .drop("scored_at")
        .sort("cell_id", "ts")
        .equals(rop_scores.sort("cell_id", "ts"))
    )
    with open_ops_store(settings, read_only=True) as store:
        rop_alerts = store.alerts(1000)[0].filter(pl.col("opened_at") >= start)
    assert rop_alerts.height >= 1  # the outage, alerted while it happens

    # The batch over the same rows: the day built whole, then scored.
    features_flow(settings, only_stale=True)
    batch = score_flow(settings, [last_day])
    assert (
        batch.scores.drop("scored_at")
        .sort("cell_id", "ts")
        .equals(rop_scores.sort("cell_id", "ts"))
    )
    columns = [c for c in batch.alerts_table.columns if c in rop_alerts.columns]
    assert (
        batch.alerts_table.select(columns)
        .sort("alert_id")
        .equals(rop_alerts.select(columns).sort("alert_id"))
    )
