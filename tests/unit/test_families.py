"""The model-family interface: every family found by name, its baseline scores, and the
score table's columns for a family that scores nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from cellpulse.errors import CellpulseError, NoDataError
from cellpulse.models.family import families, family
from cellpulse.models.params import ModelParams
from cellpulse.models.scoring import absent_columns, baseline_scorer
from cellpulse.settings import Settings

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def rows(values: dict[str, list[float]], cells: tuple[str, ...] = ("a", "b")) -> pl.DataFrame:
    """Feature-like rows: `len(values[k])` ROPs per cell, the same values for every cell."""
    n = len(next(iter(values.values())))
    return pl.DataFrame(
        {
            "cell_id": [c for c in cells for _ in range(n)],
            "ts": [T0 + timedelta(minutes=15 * i) for _ in cells for i in range(n)],
            **{k: v * len(cells) for k, v in values.items()},
        }
    )


def test_families_are_found_by_name_and_an_unknown_one_is_refused():
    assert [f.name for f in families()] == ["anomaly", "congestion"]
    assert family("congestion").name == "congestion"
    with pytest.raises(CellpulseError, match="unknown model family 'capacity'"):
        family("capacity")


def test_congestion_baseline_is_current_prb_utilisation_and_needs_it(tmp_path):
    settings = Settings(home=tmp_path)
    congestion = family("congestion")
    features = rows({"prb_util_dl_pct": [10.0, 85.0, 120.0, None]})
    baseline = congestion.baseline(features, ModelParams.of(settings))
    scored = baseline.score(features, ModelParams.of(settings))
    assert scored["congestion_prob"].to_list()[:4] == [0.1, 0.85, 1.0, None]
    assert set(scored["congestion_horizon"]) == {"1h"}
    with pytest.raises(NoDataError, match="no PRB utilisation"):
        congestion.baseline(rows({"dl_volume_mbit": [1.0, 2.0]}), ModelParams.of(settings))


def test_anomaly_baseline_flags_a_collapse_and_names_its_kpi(tmp_path):
    settings = Settings(home=tmp_path)
    normal = [500.0 + (i % 4) * 10 for i in range(200)]
    collapsed = normal[:192] + [0.0] * 8  # volume gone for the last eight ROPs
    features = pl.concat(
        [rows({"dl_volume_mbit": normal}, ("a",)), rows({"dl_volume_mbit": collapsed}, ("b",))]
    )
    scorer = baseline_scorer(
        family("anomaly"), family("anomaly").baseline(features, ModelParams.of(settings))
    )
    assert (scorer.ref.name, scorer.ref.version) == ("baseline:zscore", "baseline")
    scored = scorer.columns(features.sort("cell_id", "ts"), ModelParams.of(settings), predict=None)  # type: ignore[arg-type]
    b = scored.slice(200, 200)
    assert b["is_anomaly"].tail(5).all() and not scored.head(200)["is_anomaly"].any()
    assert b["anomaly_kpis"][-1].to_list() == ["dl_volume_mbit"]
    assert set(scored["anomaly_model"]) == {"baseline:zscore"}
    with pytest.raises(NoDataError, match="none of the KPIs the anomaly model watches"):
        family("anomaly").baseline(rows({"prb_util_dl_pct": [1.0]}), ModelParams.of(settings))


def test_a_family_without_scores_has_typed_null_columns():
    out = absent_columns(family("congestion"), 3)
    assert out.columns == [
        "congestion_prob",
        "congestion_horizon",
        "congestion_model",
        "congestion_model_version",
        "congestion_run_id",
    ]
    assert out.null_count().row(0) == (3, 3, 3, 3, 3)
    assert absent_columns(family("anomaly"), 2)["is_anomaly"].to_list() == [False, False]
