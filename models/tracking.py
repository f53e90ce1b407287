"""The MLflow edge: the only module that imports mlflow.

A few verbs: log a candidate (params, metrics, plots, the model, its registry version), load a
family's champion, move the champion alias with a recorded reason, and read what the registry
holds. Everything else in cellpulse works on plain models and tables.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import subprocess
import tempfile
import time
import urllib.request
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import polars as pl
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.pyfunc import PythonModel
from mlflow.tracking import MlflowClient

from cellpulse.errors import CellpulseError, NoChampionError
from cellpulse.models import backtest
from cellpulse.models.backtest import Fold
from cellpulse.models.family import family as family_named
from cellpulse.models.family import family_names
from cellpulse.models.promotion import Decision
from cellpulse.models.training import TRAIN_WINDOW_TAG, Candidate
from cellpulse.models.tuning import SEARCH_SPACE, Trial
from cellpulse.monitoring import MonitorReport
from cellpulse.redaction import redact_url
from cellpulse.settings import Settings
from cellpulse.window import DayWindow

MODEL_NAMES = {name: f"cellpulse-{name}" for name in family_names()}
CHAMPION, PREVIOUS = "champion", "previous"
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


@dataclass(frozen=True)
class Champion:
    family: str
    name: str
    version: str
    run_id: str
    model: Any


@dataclass(frozen=True)
class Logged:
    family: str
    name: str
    version: str
    run_id: str
    decision: Decision
    experiment_id: str


_configured: tuple[Path, str] | None = None  # (home, store) MLflow points at in this process


def configure(settings: Settings) -> None:
    """Point this process's MLflow at the installation's store; call once where a process
    starts working for a home (a command, a flow run, a test), after cellpulse.runtime set
    the environment. Idempotent and cheap, so every flow can call it first: a flow run in a
    fresh process (a deployment, a Dask worker) then finds MLflow pointed at its store."""
    global _configured
    uri = settings.tracking_uri
    if _configured == (settings.home, uri) and mlflow.get_tracking_uri() == uri:
        return
    settings.home.mkdir(parents=True, exist_ok=True)
    # MLflow narrates every step at INFO; the CLI prints its own summary instead.
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    _configured = (settings.home, uri)


class TrackingUnavailable(CellpulseError, ConnectionError):
    """The MLflow tracking server cannot be reached (retryable)."""


def check_tracking(settings: Settings, attempts: int = 3, first_wait_s: float = 1.0) -> None:
    """Fail with one clear line when the tracking server does not answer its health check
    after `attempts` tries (1, 2, 4 … s apart). A local SQLite store needs no check."""
    uri = settings.tracking_uri
    if not uri.startswith(("http://", "https://")):
        return
    shown = redact_url(uri)
    problem = ""
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as answer:
                if answer.status == 200:
                    return
                problem = f"HTTP {answer.status}"
        except OSError as exc:
            problem = str(getattr(exc, "reason", exc))
        if attempt < attempts - 1:
            time.sleep(first_wait_s * 2**attempt)
    raise TrackingUnavailable(
        f"MLflow tracking server {shown} is unreachable ({problem}) after {attempts} tries; "
        "start it (infra/mlflow-server.sh) or fix mlflow_tracking_uri. No model was "
        "registered and the champions are unchanged."
    )


def experiment_id(family: str, settings: Settings) -> str:
    """One experiment per model family, artifacts under the home (never the working dir)."""
    return _experiment(MODEL_NAMES[family], settings)


def _experiment(name: str, settings: Settings) -> str:
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = (settings.layout.mlartifacts / name).as_uri()
    return str(mlflow.create_experiment(name, artifact_location=location))


def code_version() -> str:
    """The git commit of the code that trained a model, or the package version."""
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except OSError:
        pass
    return metadata.version("cellpulse")


def pip_requirements() -> list[str]:
    reqs = [f"{pkg}=={metadata.version(pkg)}" for pkg in _REQUIREMENTS]
    return [*reqs, f"cellpulse=={metadata.version('cellpulse')}"]


def _finite(values: dict[str, float]) -> dict[str, float]:
    out = {}
    for k, v in values.items():
        f = float(v)
        if f == f and abs(f) != float("inf"):
            out[k] = f
    return out


def log_lineage(settings: Settings, candidate: Candidate, schema: Any, spec_hash: str) -> None:
    """Record which lake data trained and judged the run (`mlflow.data`, shown under the
    run's Datasets): the feature partitions of the training and hold-out windows, named by
    window, with a digest of their files (so a rebuilt day shows as a different dataset),
    the feature schema, and the lake folder as source. Nothing is copied or loaded."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    features = settings.layout.features
    with warnings.catch_warnings():
        # MLflow registers the local-file source twice (with and without "file:") and warns
        # that a path matches both; they are the same source.
        warnings.filterwarnings("ignore", "The specified dataset source", UserWarning)
        source = resolve_dataset_source(str(features.root))
    windows = {"training": candidate.split.train_days, "holdout": candidate.split.holdout_days}
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
        mlflow.log_input(
            dataset,
            context=context,
            tags={"feature_spec_hash": spec_hash, "files": str(len(files))},
        )


def log_candidate(
    candidate: Candidate,
    settings: Settings,
    decision: Decision,
    champion_metrics: dict[str, float] | None,
    input_example: pl.DataFrame,
    tags: dict[str, str],
) -> Logged:
    """Log one training run and register its model as a new version; move the champion
    alias there if the decision says so."""
    family = candidate.family
    name = MODEL_NAMES[family]
    exp = experiment_id(family, settings)
    split = candidate.split
    run_name = (
        f"{family} {split.train_days[0]}..{split.train_days[1]} "
        f"trees={candidate.params.get('num_trees')}"
    )
    # Numbers as floats: a count that is missing at scoring time must not break the schema.
    example = (
        input_example.drop("ts")
        .with_columns(
            pl.selectors.numeric().cast(pl.Float64), pl.selectors.boolean().cast(pl.Float64)
        )
        .to_pandas()
    )
    all_tags = {
        **tags,
        **split.tags(),
        "code.version": code_version(),
        "promotion.decision": "promoted" if decision.promote else "kept champion",
        "promotion.reason": decision.reason,
        "promotion.primary_metric": candidate.rule.primary,
    }
    with mlflow.start_run(experiment_id=exp, run_name=run_name, tags=all_tags) as run:
        mlflow.log_params({k: v for k, v in candidate.params.items()})
        mlflow.log_metrics(_finite(candidate.metrics))
        mlflow.log_metrics(_finite(candidate.baselines))
        mlflow.log_metric("holdout_rows", candidate.holdout_rows)
        if champion_metrics:
            mlflow.log_metrics(_finite({f"champion_{k}": v for k, v in champion_metrics.items()}))
        with tempfile.TemporaryDirectory() as tmp:
            for file_name, data in candidate.figures.items():
                (Path(tmp) / file_name).write_bytes(data)
            mlflow.log_artifacts(tmp, "plots")
        mlflow.log_text(decision.reason + "\n", "promotion.txt")
        wrapper = CellpulsePyfunc(candidate.model, family)
        signature = infer_signature(example, wrapper.predict(None, example))
        log_lineage(settings, candidate, signature.inputs, tags.get("feature_spec_hash", ""))
        # The registry prints "Successfully registered model ..." to stderr; the CLI reports
        # the version itself, so keep that chatter out of the user's terminal.
        with contextlib.redirect_stderr(io.StringIO()):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=wrapper,
                signature=signature,
                input_example=example,
                pip_requirements=pip_requirements(),
                registered_model_name=name,
            )
        version = str(info.registered_model_version)
    client = MlflowClient()
    client.set_model_version_tag(
        name, version, "feature_spec_hash", tags.get("feature_spec_hash", "")
    )
    client.set_model_version_tag(name, version, "promotion.reason", decision.reason)
    if decision.promote:
        move_champion(family, version, decision.reason, actor="cellpulse train")
    return Logged(family, name, version, run.info.run_id, decision, exp)


def move_champion(family: str, version: str, reason: str, actor: str) -> None:
    """Alias `version` as champion; the old champion becomes `previous`. The move is recorded
    on the registered model (who, when, why, from, to) so any past score can be traced."""
    name = MODEL_NAMES[family]
    client = MlflowClient()
    old = _alias_version(client, name, CHAMPION)
    if old is not None and old != version:
        client.set_registered_model_alias(name, PREVIOUS, old)
    client.set_registered_model_alias(name, CHAMPION, version)
    entry = {
        "at": datetime.now(UTC).isoformat(),
        "by": actor or os.environ.get("USER", "?"),
        "from": old,
        "to": version,
        "why": reason,
    }
    history = alias_history(family)
    history.append(entry)
    client.set_registered_model_tag(name, "champion_history", json.dumps(history[-50:]))


def alias_history(family: str) -> list[dict[str, Any]]:
    client = MlflowClient()
    try:
        model = client.get_registered_model(MODEL_NAMES[family])
    except MlflowException:
        return []
    raw = model.tags.get("champion_history")
    return list(json.loads(raw)) if raw else []


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def champion_version(family: str) -> str | None:
    return _alias_version(MlflowClient(), MODEL_NAMES[family], CHAMPION)


def _champion_entry(family: str) -> Any:
    """The registry entry of the family's `@champion`; NoChampionError if there is none."""
    name = MODEL_NAMES[family]
    try:
        return MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        raise NoChampionError(
            f"no {name}@{CHAMPION} in the registry at {redact_url(mlflow.get_tracking_uri())}; "
            "run `cellpulse train` (or `cellpulse run`) first"
        ) from exc


def load_champion(family: str) -> Champion:
    """The family's `@champion` model, unwrapped; NoChampionError if there is none."""
    name = MODEL_NAMES[family]
    mv = _champion_entry(family)
    try:
        loaded = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
    except Exception as exc:
        raise CellpulseError(
            f"{name} version {mv.version} could not be loaded ({str(exc).splitlines()[0]}); "
            f"roll back or retrain"
        ) from exc
    return Champion(
        family, name, str(mv.version), str(mv.run_id), loaded.unwrap_python_model().model
    )


def champion_train_window(family: str) -> DayWindow | None:
    """The days the family's champion was trained on (its run's `data.train_window` tag),
    None if its run has no such tag; NoChampionError if there is no champion."""
    tag = run_tag(str(_champion_entry(family).run_id), TRAIN_WINDOW_TAG)
    return DayWindow.parse(tag) if tag else None


def log_backtest(family: str, folds: list[Fold], settings: Settings, tags: dict[str, str]) -> str:
    """A parent run in the family's experiment with each metric's mean and spread over the
    folds, and one nested run per fold (its windows and metrics). Returns the parent id."""
    exp = experiment_id(family, settings)
    first, last = folds[0].test[0], folds[-1].test[1]
    all_tags = {**tags, "run.kind": "backtest", "code.version": code_version()}
    name = f"{family} backtest {len(folds)} folds, tests {first}..{last}"
    with mlflow.start_run(experiment_id=exp, run_name=name, tags=all_tags) as parent:
        mlflow.log_params({"folds": len(folds), "holdout_days": settings.train.holdout_days})
        summary = backtest.summarise(folds)
        mlflow.log_metrics(
            _finite(
                {f"{k}.mean": m for k, (m, _, _) in summary.items()}
                | {f"{k}.std": sd for k, (_, sd, _) in summary.items()}
            )
        )
        for fold in folds:
            fold_tags = {
                **all_tags,
                TRAIN_WINDOW_TAG: str(DayWindow(*fold.train)),
                "data.holdout_window": str(DayWindow(*fold.test)),
            }
            if fold.skipped:
                fold_tags["fold.skipped"] = fold.skipped
            with mlflow.start_run(
                experiment_id=exp, run_name=f"fold {fold.index}", nested=True, tags=fold_tags
            ):
                mlflow.log_param("fold", fold.index)
                mlflow.log_metrics(_finite(fold.metrics))
    return str(parent.info.run_id)


def log_trials(
    family: str, trials: list[Trial], chosen: Trial, settings: Settings, tags: dict[str, str]
) -> str:
    """A parent run for a hyperparameter search (the space, the trial count, the best
    primary metric and which trial won) and one nested run per trial with its parameters,
    hold-out metrics and fitting time. Returns the parent id."""
    exp = experiment_id(family, settings)
    primary = chosen.candidate.rule.primary
    all_tags = {
        **tags,
        "run.kind": "tuning",
        "code.version": code_version(),
        "tuning.best_trial": str(chosen.number),
    }
    name = f"{family} tuning, {len(trials)} trials"
    with mlflow.start_run(experiment_id=exp, run_name=name, tags=all_tags) as parent:
        mlflow.log_params(
            {"trials": len(trials), "primary_metric": primary}
            | {f"space.{k}": ",".join(map(str, v)) for k, v in SEARCH_SPACE.items()}
        )
        mlflow.log_metrics(_finite({f"best_{primary}": chosen.primary}))
        mlflow.log_params({f"best.{k}": v for k, v in chosen.params.items()})
        for trial in trials:
            trial_tags = {"tuning.trial": str(trial.number), "tuning.chosen": str(trial is chosen)}
            with mlflow.start_run(
                experiment_id=exp,
                run_name=f"trial {trial.number}: "
                + " ".join(f"{k}={v}" for k, v in trial.params.items()),
                nested=True,
                tags=trial_tags,
            ):
                mlflow.log_params(trial.params)
                mlflow.log_metrics(_finite(trial.candidate.metrics))
                mlflow.log_metric("fit_seconds", trial.seconds)
    return str(parent.info.run_id)


MONITORING_EXPERIMENT = "cellpulse-monitoring"


def log_monitoring(report: MonitorReport, settings: Settings) -> str:
    """One MLflow run per monitoring pass, with one nested run per check (value, threshold,
    crossed, and the check's detail table). Returns the parent run id."""
    exp = _experiment(MONITORING_EXPERIMENT, settings)
    tags = {
        "data.reference_window": "..".join(report.reference),
        "data.recent_window": "..".join(report.recent),
        "code.version": code_version(),
    }
    name = f"monitor {report.recent[1]}" + (" (breached)" if report.breached else "")
    with mlflow.start_run(experiment_id=exp, run_name=name, tags=tags) as parent:
        mlflow.log_metrics(
            {
                "checks_breached": float(len(report.breached)),
                "needs_retraining": float(report.needs_retraining),
            }
        )
        for check in report.checks:
            with mlflow.start_run(experiment_id=exp, run_name=check.name, nested=True, tags=tags):
                mlflow.log_params({"check": check.name, "threshold": check.threshold})
                mlflow.log_metrics(
                    _finite({"value": check.value, "breached": float(check.breached)})
                )
                mlflow.log_text(check.summary + "\n", "summary.txt")
                if check.detail.height:
                    mlflow.log_text(check.detail.write_csv(), f"{check.name}.csv")
    return str(parent.info.run_id)


def run_metrics(run_id: str) -> dict[str, float]:
    return dict(MlflowClient().get_run(run_id).data.metrics)


def champion_run(family: str) -> tuple[str, str] | None:
    """(version, run_id) of the family's champion, or None."""
    client = MlflowClient()
    try:
        mv = client.get_model_version_by_alias(MODEL_NAMES[family], CHAMPION)
    except MlflowException:
        return None
    return str(mv.version), str(mv.run_id)


def run_tag(run_id: str, key: str) -> str | None:
    try:
        return MlflowClient().get_run(run_id).data.tags.get(key)
    except MlflowException:
        return None


def log_to_run(run_id: str, metrics: dict[str, float], artifact: Path) -> None:
    """Add evaluation results to an existing (finished) training run."""
    client = MlflowClient()
    stamp = int(datetime.now(UTC).timestamp() * 1000)
    batch = [Metric(k, v, stamp, 0) for k, v in metrics.items()]
    for i in range(0, len(batch), 500):  # the tracking store takes batches of at most 1000
        client.log_batch(run_id, metrics=batch[i : i + 500])
    client.log_artifact(run_id, str(artifact), "scoreboard")


@dataclass(frozen=True)
class VersionInfo:
    family: str
    version: str
    aliases: list[str]
    run_id: str
    created: datetime
    primary_metric: str
    primary_value: float
    reason: str


def resolve_family(name: str) -> str:
    """'anomaly', 'cellpulse-anomaly' -> 'anomaly'; CellpulseError for anything else."""
    for family, registered in MODEL_NAMES.items():
        if name in (family, registered):
            return family
    raise CellpulseError(
        f"unknown model {name!r}; use one of "
        f"{', '.join(list(MODEL_NAMES) + list(MODEL_NAMES.values()))}"
    )


def list_versions(family: str) -> list[VersionInfo]:
    """Every registered version of a family, newest first, with aliases and its primary
    hold-out metric."""
    client = MlflowClient()
    name = MODEL_NAMES[family]
    try:
        versions = client.search_model_versions(f"name = '{name}'")
        alias_map = dict(client.get_registered_model(name).aliases or {})
    except MlflowException:
        return []
    aliases_of: dict[str, list[str]] = {}
    for alias, version in alias_map.items():
        aliases_of.setdefault(str(version), []).append(alias)
    out = []
    for mv in versions:
        run = client.get_run(mv.run_id) if mv.run_id else None
        primary = run.data.tags.get("promotion.primary_metric", "") if run else ""
        value = run.data.metrics.get(primary, float("nan")) if run else float("nan")
        out.append(
            VersionInfo(
                family,
                str(mv.version),
                sorted(aliases_of.get(str(mv.version), [])),
                str(mv.run_id),
                datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC),
                primary,
                float(value),
                (mv.tags or {}).get("promotion.reason", ""),
            )
        )
    return sorted(out, key=lambda v: int(v.version), reverse=True)


def promote(family: str, version: str, reason: str, actor: str) -> None:
    """A person's decision: make `version` the champion (recorded like any alias move)."""
    name = MODEL_NAMES[family]
    known = {v.version for v in list_versions(family)}
    if version not in known:
        raise CellpulseError(
            f"{name} has no version {version}; versions: "
            f"{', '.join(sorted(known, key=int)) or 'none'}"
        )
    move_champion(family, version, reason, actor)


def rollback(family: str, reason: str, actor: str) -> str:
    """Give the champion alias back to the `previous` version; returns that version. The
    rolled-back version becomes `previous`, so a roll-forward is one more rollback."""
    name = MODEL_NAMES[family]
    previous = _alias_version(MlflowClient(), name, PREVIOUS)
    if previous is None:
        raise CellpulseError(f"{name} has no @{PREVIOUS} version to roll back to")
    move_champion(family, previous, reason, actor)
    return previous
