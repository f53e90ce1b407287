"""Each model family on its own, end to end through the CLI: networks that deliver only some
KPIs, and a network too young for a champion, still end with published scores."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from cellpulse import lake
from cellpulse.cli import app
from cellpulse.features.spec import FeatureParams, spec_for
from cellpulse.features.store import lake_spec
from cellpulse.models import tracking
from cellpulse.settings import load_settings

TINY_MODELS = "train: {num_trees: 25, n_jobs: 1, holdout_days: 2, min_data_in_leaf: 20}\n"


def cli(*args: str) -> str:
    """Run a cellpulse command; its output (it must exit 0)."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def home_with(tmp_path: Path) -> tuple[str, str]:
    config = tmp_path / "cellpulse.yaml"
    config.write_text(TINY_MODELS)
    return str(tmp_path / "home"), str(config)


def scores_of(home: str) -> pl.DataFrame:
    return lake.Dataset(Path(home) / "lake" / "scores").read()


def test_prb_and_volume_only_network_publishes_anomaly_and_congestion_scores(
    tmp_path, restore_environ
):
    home, config = home_with(tmp_path)
    sim = cli("simulate", "--cells", "12", "--days", "9", "--seed", "11", "--kpis", "prb_volume",
              "--home", home, "--config", config)  # fmt: skip
    assert "KPIs written: prb_util_dl_pct, dl_volume_mbit" in sim

    out = cli("run", "--home", home, "--config", config)
    assert "left out for absent KPIs" in out  # the features say what they lack
    assert "anomaly model watches dl_volume_mbit" in out  # the train summary's coverage
    assert "congestion rule: congested: prb_util_dl_pct" in out

    scores = scores_of(home)
    assert scores.height == 12 * 9 * 96
    assert scores["anomaly_score"].null_count() == 0
    assert scores["congestion_prob"].null_count() == 0

    # Features, training and scoring agree on one spec: the one for the KPIs delivered.
    settings = load_settings(Path(config), home=Path(home))
    spec = lake_spec(settings.layout, FeatureParams.of(settings))
    assert spec.hash() != spec_for(FeatureParams.of(settings)).hash()
    assert spec.kpis_used() and set(spec.kpis_used()) <= {"prb_util_dl_pct", "dl_volume_mbit"}
    built = {
        lake.read_metadata(f)["cellpulse.feature_spec_hash"]
        for f in settings.layout.features.files()
    }
    assert built == {spec.hash()}
    tracking.configure(settings)
    for family in ("anomaly", "congestion"):
        versions = tracking.list_versions(family)
        assert versions, f"{family} was not trained"
        model = tracking.load_champion(family).model if tracking.champion_version(family) else None
        if model is not None:
            assert model.spec_hash == spec.hash()


def test_a_young_network_scores_with_baselines_then_hands_over_to_a_champion(
    tmp_path, restore_environ
):
    home, config = home_with(tmp_path)
    export = tmp_path / "export"
    cli("simulate", "--cells", "30", "--days", "10", "--seed", "3", "--out", str(export),
        "--home", home, "--config", config)  # fmt: skip
    files = sorted(export.glob("*.parquet"))
    first_two_days = [str(f) for f in files if f.name.startswith(("A20260105", "A20260106"))]

    # Two days: too few to train (a hold-out needs more), yet scores are published.
    young = cli("run", *first_two_days, "--home", home, "--config", config)
    assert "anomaly: not trained — training needs more than 2 days" in young
    assert "anomaly: baseline scores (per-cell z-score" in young
    assert "congestion: baseline scores (current PRB utilisation" in young
    scores = scores_of(home)
    assert scores.height == 30 * 2 * 96
    assert set(scores["anomaly_model"]) == {"baseline:zscore"}
    assert set(scores["congestion_model"]) == {"baseline:prb_util"}
    assert set(scores["anomaly_model_version"]) == {"baseline"}
    assert scores["anomaly_score"].null_count() == 0

    # No champion and no labels: congestion is still judged (its truth is the rule on the
    # KPIs), as the baseline that scored it; anomaly says it was skipped; monitoring says
    # there is nothing to compare with.
    truth = Path(home) / "ground_truth" / "events.parquet"
    aside = truth.with_suffix(".aside")
    if truth.is_file():
        truth.rename(aside)
    judged = cli("evaluate", "--home", home, "--config", config)
    if aside.is_file():
        aside.rename(truth)
    assert "no champion yet" in judged
    assert "congestion scored by baseline:prb_util (version baseline)" in judged
    assert "anomaly: skipped (no event labels" in judged
    assert "Congestion: model vs baselines" in judged and "Anomaly: model" not in judged
    watched = cli("monitor", "--home", home, "--config", config)
    assert "no champion yet; drift not checked" in watched

    # All ten days: the families train; whichever earns the champion alias takes over, the
    # other keeps publishing its baseline.
    grown = cli("run", str(export), "--home", home, "--config", config)
    scores = scores_of(home)
    assert scores.height == 30 * 10 * 96
    settings = load_settings(Path(config), home=Path(home))
    tracking.configure(settings)
    newest = scores.filter(pl.col("ts").dt.date() == scores["ts"].max().date())
    handed_over = []
    for family in ("anomaly", "congestion"):
        names = set(newest[f"{family}_model"])
        if tracking.champion_version(family) is not None:
            assert names == {f"cellpulse-{family}"}, grown
            handed_over.append(family)
        else:
            assert names == {f"baseline:{'zscore' if family == 'anomaly' else 'prb_util'}"}
            assert f"{family}: baseline scores" in grown
    assert handed_over, grown


def test_volume_and_users_only_network_scores_anomalies_and_says_why_no_congestion(
    tmp_path, restore_environ
):
    home, config = home_with(tmp_path)
    cli("simulate", "--cells", "9", "--days", "8", "--seed", "5", "--kpis", "volume_users",
        "--home", home, "--config", config)  # fmt: skip
    out = cli("run", "--home", home, "--config", config)
    assert "congestion: not trained — " in out and "(congestion.* settings)" in out
    assert "congestion: no scores — no champion (no model trained yet) and no PRB" in out

    scores = scores_of(home)
    assert scores.height == 9 * 8 * 96
    assert scores["anomaly_score"].null_count() == 0
    assert scores["congestion_prob"].null_count() == scores.height
    assert scores["congestion_model"].null_count() == scores.height
    settings = load_settings(Path(config), home=Path(home))
    tracking.configure(settings)
    assert tracking.list_versions("anomaly")
    assert not tracking.list_versions("congestion")
