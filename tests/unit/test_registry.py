"""The registry verbs against a real MLflow store (SQLite under tmp_path)."""

from __future__ import annotations

import numpy as np
import pytest

from cellpulse.errors import CellpulseError
from cellpulse.features.builder import build_features
from cellpulse.features.spec import default_spec
from cellpulse.models import tracking
from cellpulse.models.families import anomaly as anomaly_family
from cellpulse.models.params import ModelParams
from cellpulse.models.promotion import Decision
from cellpulse.settings import TrainSettings
from tests.conftest import tiny_settings

SPEC = default_spec(15)


@pytest.fixture
def registry(tmp_path, tiny_network, restore_environ):
    settings = tiny_settings(tmp_path / "home")
    tracking.configure(settings)
    features = build_features(tiny_network[2], SPEC, rop_minutes=15, min_denominator=10)
    logged = []
    for seed in (1, 2):
        s = settings.model_copy(
            update={
                "train": TrainSettings(
                    num_trees=10, n_jobs=1, holdout_days=2, min_data_in_leaf=20, seed=seed
                )
            }
        )
        candidate = anomaly_family.train_anomaly(
            features, tiny_network[1], ModelParams.of(s), SPEC.hash()
        )
        logged.append(
            (
                candidate,
                tracking.log_candidate(
                    candidate,
                    s,
                    Decision(True, f"seed {seed}"),
                    None,
                    candidate.split.holdout.head(5),
                    {"feature_spec_hash": SPEC.hash()},
                ),
            )
        )
    return settings, logged


def scores_of(model, holdout):
    """What tells two anomaly models of other seeds apart: their regressors' predictions
    (the scores of cells with a profile are the same statistics whatever the seed)."""
    return model.expected(holdout).to_numpy()


def test_every_training_is_a_version_and_promotions_are_recorded(registry):
    del registry  # the fixture registered two versions
    versions = tracking.list_versions("anomaly")
    assert [v.version for v in versions] == ["2", "1"]
    assert versions[0].aliases == ["champion"] and versions[1].aliases == ["previous"]
    assert versions[0].primary_metric in ("val_recall_at_budget", "val_mae_ratio")
    history = tracking.alias_history("anomaly")
    assert [(h["from"], h["to"]) for h in history] == [(None, "1"), ("1", "2")]
    assert history[-1]["why"] == "seed 2"


def test_rollback_serves_the_old_model_and_can_roll_forward(registry):
    _, logged = registry
    holdout = logged[0][0].split.holdout
    first, second = (scores_of(c.model, holdout) for c, _ in logged)
    assert not np.array_equal(first, second)
    assert np.array_equal(scores_of(tracking.load_champion("anomaly").model, holdout), second)

    assert tracking.rollback("anomaly", "bad alerts overnight", "noc-lead") == "1"
    assert np.array_equal(scores_of(tracking.load_champion("anomaly").model, holdout), first)
    move = tracking.alias_history("anomaly")[-1]
    assert (move["from"], move["to"], move["by"]) == ("2", "1", "noc-lead")

    assert tracking.rollback("anomaly", "fixed", "noc-lead") == "2"  # roll forward again
    assert tracking.champion_version("anomaly") == "2"


def test_promote_by_hand_checks_the_version(registry):
    tracking.promote("anomaly", "1", "A/B winner", "ds-team")
    assert tracking.champion_version("anomaly") == "1"
    with pytest.raises(CellpulseError, match="has no version 7; versions: 1, 2"):
        tracking.promote("anomaly", "7", "typo", "ds-team")
    with pytest.raises(CellpulseError, match="no @previous version"):
        tracking.rollback("congestion", "nothing there", "x")
    assert tracking.resolve_family("cellpulse-congestion") == "congestion"


def test_runs_record_their_training_and_holdout_data_as_mlflow_datasets(registry):
    import mlflow

    _, logged = registry
    candidate, run = logged[0]
    inputs = mlflow.get_run(run.run_id).inputs.dataset_inputs
    by_context = {
        next(t.value for t in i.tags if t.key == "mlflow.data.context"): i for i in inputs
    }
    assert set(by_context) == {"training", "holdout"}
    train = by_context["training"].dataset
    start, end = candidate.split.train_days
    assert train.name == f"features {start}..{end}"
    assert train.source_type == "local"
    assert "prb_util_dl_pct" in train.schema
    assert by_context["holdout"].dataset.digest != ""
    assert {t.key: t.value for t in by_context["training"].tags}["feature_spec_hash"] == SPEC.hash()


def test_registry_commands_point_mlflow_at_their_home(registry, tmp_path):
    from typer.testing import CliRunner

    from cellpulse.cli import app

    settings, _ = registry
    tracking.configure(tiny_settings(tmp_path / "elsewhere"))  # the process used another store
    runner = CliRunner()
    home = str(settings.home)
    moved = runner.invoke(app, ["promote", "anomaly", "1", "--reason", "A/B", "--home", home])
    assert moved.exit_code == 0, moved.output
    assert "cellpulse-anomaly@champion -> version 1 (A/B)" in moved.output
    assert tracking.champion_version("anomaly") == "1"

    tracking.configure(tiny_settings(tmp_path / "elsewhere"))
    listed = runner.invoke(app, ["models", "--home", home])
    assert listed.exit_code == 0, listed.output
    assert "cellpulse-congestion: no versions yet" in listed.output
    assert "champion 2 -> 1  by" in listed.output


def test_only_the_tracking_modules_import_mlflow():
    """MLflow stays at the edge: models/tracking.py and its `tracking_*` siblings."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    importing = re.compile(r"^\s*(import mlflow|from mlflow[ .])", re.MULTILINE)
    found = {
        str(path.relative_to(root))
        for folder in ("cellpulse", "features", "models", "flows")
        for path in (root / folder).rglob("*.py")
        if importing.search(path.read_text())
    }
    assert "models/tracking.py" in found
    assert all(re.fullmatch(r"models/tracking(_[a-z]+)?\.py", name) for name in found), found


def test_models_registered_before_the_split_still_find_their_wrapper():
    """A registered model pickles its wrapper's import path; older ones name it in tracking."""
    from cellpulse.models import tracking, tracking_model

    assert tracking.CellpulsePyfunc is tracking_model.CellpulsePyfunc
