"""One interface for a model family, so training, backtests, tuning, promotion and the flows
loop over families instead of naming them. Each family (cellpulse.models.families.*) fits a
candidate, judges another model on that candidate's hold-out, scores feature rows into its
own columns of the score table, says what drives its model, and offers a baseline that
scores before any model of its own has earned the champion alias.

A module of cellpulse.models.families that defines `FAMILY` is a family: adding a third is
adding one module there."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any, Protocol

import pandas as pd
import polars as pl

from cellpulse.errors import CellpulseError
from cellpulse.models.boosting import Predict, Trainer
from cellpulse.models.params import ModelParams
from cellpulse.models.training import Candidate, TrainingData


class Baseline(Protocol):
    """A family's stand-in for a champion: a simple method fitted on recent history."""

    name: str  # as the score table names the model, e.g. "baseline:zscore"
    what: str  # in words, for summaries

    def score(self, features: pl.DataFrame, params: ModelParams) -> pl.DataFrame:
        """The family's score columns (`ModelFamily.columns`) for `features`, row for row
        (`features` sorted by cell_id, ts)."""
        ...


class ModelFamily(Protocol):
    name: str  # "anomaly", "congestion": the registry names the model `cellpulse-<name>`
    # The family's value columns in the score table, with their types (model name, version
    # and run id columns, `<name>_model*`, are added for every family alike).
    columns: Mapping[str, pl.DataType]
    # What settings decide whether the family can train, for the summary when it cannot.
    settings_hint: str

    def fit(
        self, data: TrainingData, params: ModelParams, spec_hash: str, trainer: Trainer
    ) -> Candidate:
        """A model fitted on the older days and judged, next to its baselines, on the
        newest; NoDataError when the data cannot train this family (saying why)."""
        ...

    def evaluate(
        self, candidate: Candidate, model: Any, data: TrainingData, params: ModelParams
    ) -> dict[str, float]:
        """Metrics of another model (the champion) on the candidate's own hold-out, so the
        promotion gate compares like with like."""
        ...

    def score(
        self, model: Any, features: pl.DataFrame, params: ModelParams, predict: Predict
    ) -> pl.DataFrame:
        """The family's score columns for `features` (sorted by cell_id, ts), row for row."""
        ...

    def explain(self, model: Any, top: int) -> list[tuple[str, float]]:
        """The features that drive the model most, largest first."""
        ...

    def band(self, model: Any, features: pl.DataFrame, predict: Predict) -> pl.DataFrame | None:
        """What ops sees beside each KPI the model judges (lake/expected: the value, the
        expected value and its band), or None when the family draws none."""
        ...

    def baseline(self, reference: pl.DataFrame, params: ModelParams) -> Baseline:
        """The family's baseline fitted on `reference` feature rows; NoDataError saying why
        when the data cannot carry it (e.g. its KPI is absent)."""
        ...

    def serve(self, model: Any, frame: pl.DataFrame) -> pd.DataFrame:
        """What MLflow's generic model face answers for `frame` (`mlflow models serve`)."""
        ...


def families() -> tuple[ModelFamily, ...]:
    """Every family, by name: the modules of cellpulse.models.families that define FAMILY."""
    from cellpulse.models import families as package

    found = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if hasattr(module, "FAMILY"):
            found.append(module.FAMILY)
    return tuple(sorted(found, key=lambda f: f.name))


def family_names() -> tuple[str, ...]:
    return tuple(f.name for f in families())


def family(name: str) -> ModelFamily:
    """The family called `name`; CellpulseError naming the known ones otherwise."""
    for f in families():
        if f.name == name:
            return f
    raise CellpulseError(f"unknown model family {name!r}; families: {', '.join(family_names())}")


def model_columns(name: str) -> tuple[str, str, str]:
    """The score table's columns naming the model of family `name`: name, version, run id."""
    return f"{name}_model", f"{name}_model_version", f"{name}_run_id"
