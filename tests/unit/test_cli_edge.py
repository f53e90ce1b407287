"""What every command does at the edge, before any stage runs: a wrong argument, setting or
home is refused at once, in one line, before a Prefect server starts or a home is made."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

# Imported by the checks: loaded here, outside the timing.
import cellpulse.features.store
import cellpulse.ingest
import cellpulse.models.backtest  # noqa: F401
from cellpulse.cli import app, edge
from cellpulse.layout import Layout

from ..conftest import START


@pytest.fixture
def no_server(monkeypatch, restore_environ):
    """Fail the test if a command gets as far as starting its Prefect server."""
    started: list[object] = []
    monkeypatch.setattr(edge, "start_prefect_server", started.append)
    return started


def empty_home(tmp_path: Path) -> str:
    home = tmp_path / "home"
    home.mkdir()
    return str(home)


def home_with_one_day_of_features(tmp_path: Path) -> str:
    home = tmp_path / "home"
    Layout(home).features.write_partition(pl.DataFrame({"cell_id": ["c1"]}), START, "north")
    return str(home)


CASES = {
    "ingest a missing folder": (None, ["ingest", "missing-folder"], "missing-folder"),
    "run on a missing file": (None, ["run", "nowhere.parquet"], "nowhere.parquet"),
    "simulate unknown KPIs": (None, ["simulate", "--kpis", "bogus"], "bogus"),
    "train with a missing labels file": (
        empty_home,
        ["train", "--labels", "typo.parquet"],
        "labels file typo.parquet does not exist",
    ),
    "train with no features": (empty_home, ["train"], "no features yet"),
    "features with --from after --to": (
        empty_home,
        ["features", "--from", "2026-02-01", "--to", "2026-01-01"],
        "swap them",
    ),
    "features with nothing ingested": (empty_home, ["features"], "run `cellpulse ingest`"),
    "score with no features": (empty_home, ["score"], "run `cellpulse features` first"),
    "evaluate with a missing labels file": (
        empty_home,
        ["evaluate", "--labels", "typo.csv"],
        "labels file typo.csv does not exist",
    ),
    "backtest with too few days": (
        home_with_one_day_of_features,
        ["backtest", "--folds", "5"],
        "use fewer folds",
    ),
    "backfill an unknown stage": (
        empty_home,
        ["backfill", "--from", "2026-01-05", "--to", "2026-01-06", "--stages", "features,bogus"],
        "unknown stage(s) ['bogus']",
    ),
    "monitor with no features": (empty_home, ["monitor"], "no features to monitor yet"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_argument_errors_come_before_any_server_and_leave_no_home(
    case, tmp_path, monkeypatch, no_server
):
    make_home, args, needle = CASES[case]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("CELLPULSE_HOME", raising=False)
    home = ["--home", make_home(tmp_path)] if make_home else []

    result = CliRunner().invoke(app, [*args, *home])

    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert no_server == []
    assert list(cwd.iterdir()) == []  # no ./.cellpulse left behind


def test_a_home_that_is_a_file_is_refused_before_any_server(tmp_path, no_server):
    runner = CliRunner()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    as_file = runner.invoke(app, ["demo", "--home", str(a_file)])
    assert as_file.exit_code == 2 and "is a file, not a folder" in as_file.output

    inside_file = runner.invoke(app, ["demo", "--home", str(a_file / "home")])
    assert inside_file.exit_code == 2 and f"{a_file} is a file" in inside_file.output
    assert no_server == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any folder")
def test_a_home_this_user_cannot_write_is_refused_before_any_server(tmp_path, no_server):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        result = CliRunner().invoke(app, ["demo", "--home", str(locked / "home")])
    finally:
        locked.chmod(0o700)
    assert result.exit_code == 2 and "is not writable" in result.output
    assert no_server == []
    assert not (locked / "home").exists()
