"""The MLflow edge for a model's own artifacts (imports mlflow, like every `tracking*`
module): MLflow's generic face of a cellpulse model, the model logged into the registry with
its signature, input example and pins, and the lake data it was trained and judged on."""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from datetime import date
from importlib import metadata
from typing import Any

import mlflow
import pandas as pd
import polars as pl
from mlflow.entities import DatasetInput, InputTag
from mlflow.models import infer_signature
from mlflow.pyfunc import PythonModel
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT as CONTEXT

from cellpulse.models.family import family as family_named
from cellpulse.models.training import Candidate
from cellpulse.settings import Settings

_REQUIREMENTS = ("lightgbm", "polars", "numpy", "pandas", "pyarrow", "scikit-learn", "mlflow")


class CellpulsePyfunc(PythonModel):
    """MLflow's generic face of a cellpulse model, for `mlflow models serve` and friends.
    cellpulse itself unwraps it and calls the model directly on Polars frames."""

    def __init__(self, model: Any, family: str = "") -> None:
        self.model = model
        self.family = family

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        # Models logged before families existed carry no family name: tell them by type.
        name = getattr(self, "family", "") or (
            "anomaly" if hasattr(self.model, "boosters") else "congestion"
        )
        return family_named(name).serve(self.model, pl.from_pandas(model_input))


def pip_requirements() -> list[str]:
    reqs = [f"{pkg}=={metadata.version(pkg)}" for pkg in _REQUIREMENTS]
    return [*reqs, f"cellpulse=={metadata.version('cellpulse')}"]


def model_example(rows: pl.DataFrame) -> pd.DataFrame:
    """Feature rows as the model's input example: without `ts`, numbers as floats (a count
    that is missing at scoring time must not break the schema)."""
    return (
        rows.drop("ts")
        .with_columns(
            pl.selectors.numeric().cast(pl.Float64), pl.selectors.boolean().cast(pl.Float64)
        )
        .to_pandas()
    )


def log_model(
    model: Any, family: str, example: pd.DataFrame, registered_name: str
) -> tuple[str, Any]:
    """Log `model` into the active run behind its generic face and register it as a new
    version of `registered_name`; the version and the signature's input schema."""
    wrapper = CellpulsePyfunc(model, family)
    signature = infer_signature(example, wrapper.predict(None, example))
    # The registry prints "Successfully registered model ..." to stderr; the CLI reports
    # the version itself, so keep that chatter out of the user's terminal.
    with contextlib.redirect_stderr(io.StringIO()):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=wrapper,
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
            registered_model_name=registered_name,
        )
    return str(info.registered_model_version), signature.inputs


def feature_inputs(
    settings: Settings,
    windows: dict[str, tuple[date, date]],
    schema: Any,
    spec_hash: str,
) -> list[DatasetInput]:
    """The feature partitions of each window (context -> first and last day) as MLflow
    dataset inputs (`mlflow.data`, shown under a run's Datasets): named by window, with a
    digest of their files (so a rebuilt day shows as a different dataset), the feature
    schema, and the lake folder as source. Nothing is copied or loaded."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    features = settings.layout.features
    with warnings.catch_warnings():
        # MLflow registers the local-file source twice (with and without "file:") and warns
        # that a path matches both; they are the same source.
        warnings.filterwarnings("ignore", "The specified dataset source", UserWarning)
        source = resolve_dataset_source(str(features.root))
    inputs = []
    for context, (start, end) in windows.items():
        files = features.files(start, end)
        digest = hashlib.sha256(spec_hash.encode())
        for f in files:
            st = f.stat()
            digest.update(f"|{f.relative_to(features.root)}|{st.st_size}|{st.st_mtime_ns}".encode())
        dataset = MetaDataset(  # type: ignore[abstract]  # concrete in practice
            source=source,
            name=f"features {start}..{end}",
            digest=digest.hexdigest()[:16],
            schema=schema,
        )
        tags = {"feature_spec_hash": spec_hash, "files": str(len(files)), CONTEXT: context}
        inputs.append(
            DatasetInput(dataset._to_mlflow_entity(), [InputTag(k, v) for k, v in tags.items()])
        )
    return inputs


def frame_schema(rows: pl.DataFrame) -> Any:
    """The MLflow schema of feature rows as a model reads them (see `model_example`)."""
    return infer_signature(model_example(rows.head(5))).inputs


def log_lineage(
    settings: Settings, candidate: Candidate, schema: Any, spec_hash: str, run_id: str
) -> None:
    """Record which lake data trained and judged run `run_id`: the feature partitions of
    its training and hold-out windows (`feature_inputs`)."""
    windows = {"training": candidate.split.train_days, "holdout": candidate.split.holdout_days}
    datasets = feature_inputs(settings, windows, schema, spec_hash)
    MlflowClient().log_inputs(run_id, datasets=datasets)
