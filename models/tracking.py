"""The MLflow edge: with its sibling `tracking_*` modules, the only code that imports mlflow.

A few verbs: point MLflow at the store, log a candidate (params, metrics, plots, the model,
its registry version), load a family's champion, move the champion alias with a recorded
reason, and read what the registry holds. The model's own artifacts (its generic face, the
logged model, its lineage) are `tracking_model`; runs beside training (backtests, tuning
trials, monitoring) are `tracking_runs`. Everything else in cellpulse works on plain models
and tables.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import polars as pl
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from cellpulse.errors import CellpulseError, NoChampionError, NoDataError
from cellpulse.models.family import family_names
from cellpulse.models.promotion import Decision

# Registered models pickle their wrapper by its import path, and models registered before
# the wrapper had its own module name it `cellpulse.models.tracking.CellpulsePyfunc`: the
# name stays importable here so those versions still load.
from cellpulse.models.tracking_model import (
    CellpulsePyfunc,  # noqa: F401
    log_lineage,
    log_model,
    model_example,
)
from cellpulse.models.training import TRAIN_WINDOW_TAG, Candidate
from cellpulse.redaction import redact_url
from cellpulse.settings import Settings
from cellpulse.window import DayWindow

MODEL_NAMES = {name: f"cellpulse-{name}" for name in family_names()}
CHAMPION, PREVIOUS = "champion", "previous"


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
    return experiment_named(MODEL_NAMES[family], settings)


# MLflow 3's experiment-type setting: these are model-training experiments, not GenAI ones.
# The UI's own mode (its GenAI / Model training switch, `?workflowType=machine_learning`)
# still decides the first page a browser shows; the README gives that address.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def experiment_named(name: str, settings: Settings) -> str:
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        if found.tags.get("mlflow.experimentKind") is None:  # created by an older cellpulse
            for key, value in EXPERIMENT_KIND.items():
                MlflowClient().set_experiment_tag(found.experiment_id, key, value)
        return str(found.experiment_id)
    location = (settings.layout.mlartifacts / name).as_uri()
    return str(mlflow.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND))


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


def finite(values: dict[str, float]) -> dict[str, float]:
    out = {}
    for k, v in values.items():
        f = float(v)
        if f == f and abs(f) != float("inf"):
            out[k] = f
    return out


def every_metric(values: dict[str, float]) -> dict[str, float]:
    """`values` with NaN kept (MLflow stores it): a metric a run could not measure still
    has its column, so every run of a family has the same metric names to compare."""
    return {k: float(v) for k, v in values.items()}


RUN_KIND = "run.kind"  # training, evaluation, backtest, tuning
TUNED = "training.params"  # "tuned" or "configured": which parameters trained the model


@contextmanager
def training_run(family: str, settings: Settings, tags: dict[str, str]) -> Iterator[str]:
    """A family's training run, open while its model trains (so its duration is the
    training's); `log_candidate` fills and closes it. A family that cannot train on this
    data (NoDataError) leaves no run behind; any other failure marks the run FAILED."""
    client = MlflowClient()
    run = client.create_run(
        experiment_id(family, settings),
        run_name=f"{family} training",
        tags={**tags, RUN_KIND: "training", "code.version": code_version()},
    )
    run_id = str(run.info.run_id)
    try:
        yield run_id
    except NoDataError:
        client.delete_run(run_id)
        raise
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, "FINISHED")


def run_name(candidate: Candidate, tags: dict[str, str]) -> str:
    """'anomaly 2024-05-01..2024-05-07 configured trees=100', or '... tuned (trial 3 of 8)
    trees=200': tuned and untuned runs are told apart in the run list."""
    start, end = candidate.split.train_days
    trees = candidate.params.get("num_trees")
    if "tuning.trial" in tags:
        how = f"tuned (trial {tags['tuning.trial']} of {tags.get('tuning.trials', '?')})"
    else:
        how = "configured"
    return f"{candidate.family} {start}..{end} {how} trees={trees}"


def version_description(
    candidate: Candidate,
    decision: Decision,
    champion_metrics: dict[str, float] | None,
    tags: dict[str, str],
) -> str:
    """What a model version was trained on and judged on, and why it was (not) promoted,
    for its page in the registry."""
    split = candidate.split
    primary = candidate.rule.primary
    value = candidate.metrics.get(primary, float("nan"))
    against = (
        f"; the champion scored {champion_metrics[primary]:.4f} on the same rows"
        if champion_metrics and primary in champion_metrics
        else ""
    )
    tuned = (
        f"tuned parameters (trial {tags['tuning.trial']}, search run {tags['tuning.run_id']})"
        if "tuning.run_id" in tags
        else "the configured parameters"
    )
    return (
        f"Trained on features of {DayWindow(*split.train_days)} ({split.train.height} rows, "
        f"feature spec {tags.get('feature_spec_hash', '?')[:12]}, labels: "
        f"{tags.get('data.labels', 'none')}) with {tuned}; code {code_version()}.\n\n"
        f"Judged on the hold-out {DayWindow(*split.holdout_days)} ({candidate.holdout_rows} "
        f"rows): {primary} {value:.4f}{against}.\n\n"
        f"At registration: {'promoted to champion' if decision.promote else 'not promoted'} "
        f"— {decision.reason}"
    )


def log_candidate(
    candidate: Candidate,
    settings: Settings,
    decision: Decision,
    champion_metrics: dict[str, float] | None,
    input_example: pl.DataFrame,
    tags: dict[str, str],
    run_id: str | None = None,
) -> Logged:
    """Log one training run and register its model as a new version; move the champion
    alias there if the decision says so. With `run_id` (a `training_run` open since the
    model started training) the run is filled and closed; without, a new run is made.

    Every run of a family logs the same metric names: the hold-out metrics, the
    baselines' and the champion's on the same rows (NaN where there is no comparable
    champion), so the compare view lines them up."""
    family = candidate.family
    name = MODEL_NAMES[family]
    exp = experiment_id(family, settings)
    example = model_example(input_example)
    all_tags = {
        **tags,
        **candidate.split.tags(),
        RUN_KIND: "training",
        TUNED: "tuned" if "tuning.run_id" in tags else "configured",
        "code.version": code_version(),
        "promotion.decision": "promoted" if decision.promote else "kept champion",
        "promotion.reason": decision.reason,
        "promotion.primary_metric": candidate.rule.primary,
    }
    champion = champion_metrics or {}
    compared = {f"champion_{k}": champion.get(k, float("nan")) for k in candidate.metrics}
    opened = (
        mlflow.start_run(run_id=run_id)
        if run_id
        else mlflow.start_run(experiment_id=exp, run_name=run_name(candidate, tags))
    )
    with opened as run:
        mlflow.set_tags({**all_tags, "mlflow.runName": run_name(candidate, tags)})
        mlflow.log_params({k: v for k, v in candidate.params.items()})
        mlflow.log_metrics(every_metric(candidate.metrics))
        mlflow.log_metrics(every_metric(candidate.baselines))
        mlflow.log_metrics(every_metric(compared))
        mlflow.log_metric("holdout_rows", candidate.holdout_rows)
        with tempfile.TemporaryDirectory() as tmp:
            for file_name, data in candidate.figures.items():
                (Path(tmp) / file_name).write_bytes(data)
            mlflow.log_artifacts(tmp, "plots")
        mlflow.log_text(decision.reason + "\n", "promotion.txt")
        version, inputs = log_model(candidate.model, family, example, name)
        log_lineage(settings, candidate, inputs, tags.get("feature_spec_hash", ""), run.info.run_id)
    client = MlflowClient()
    client.set_model_version_tag(
        name, version, "feature_spec_hash", tags.get("feature_spec_hash", "")
    )
    client.set_model_version_tag(name, version, "promotion.reason", decision.reason)
    client.update_model_version(
        name, version, version_description(candidate, decision, champion_metrics, tags)
    )
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
    table = history_markdown(history)
    # People read the history where they look: on the registered model's page, and as a
    # table beside the champion's own run (artifacts live on runs, not on models).
    client.update_registered_model(name, f"Champion history, newest first:\n\n{table}")
    model_version = client.get_model_version(name, version)
    if model_version.run_id:
        client.log_text(model_version.run_id, table, "registry/champion_history.md")
        client.log_text(model_version.run_id, history_csv(history), "registry/champion_history.csv")
    current = model_version.description or ""
    made = f"Made champion {str(entry['at'])[:19]}Z by {entry['by']}: {reason}"
    client.update_model_version(name, version, f"{current}\n\n{made}".strip())


HISTORY_COLUMNS = ("at", "by", "from", "to", "why")


def history_frame(history: list[dict[str, Any]]) -> pl.DataFrame:
    """The champion moves as a table, newest first."""
    rows = [{k: str(h.get(k) or "–") for k in HISTORY_COLUMNS} for h in reversed(history)]
    return pl.DataFrame(rows, schema={k: pl.String for k in HISTORY_COLUMNS})


def history_csv(history: list[dict[str, Any]]) -> str:
    return history_frame(history).write_csv()


def history_markdown(history: list[dict[str, Any]]) -> str:
    """The champion moves as a Markdown table, newest first (time to the second, UTC)."""
    lines = ["| when (UTC) | by | from | to | why |", "|---|---|---|---|---|"]
    for row in history_frame(history).iter_rows(named=True):
        why = row["why"].replace("|", "\\|")  # a pipe would split the cell
        lines.append(f"| {row['at'][:19]} | {row['by']} | {row['from']} | {row['to']} | {why} |")
    return "\n".join(lines) + "\n"


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


def log_evaluation(
    family: str,
    settings: Settings,
    training_run_id: str,
    window: DayWindow,
    headline: dict[str, float],
    board: pl.DataFrame,
    report: Path,
) -> str:
    """An evaluation of published scores as its own run in the family's experiment: the
    family's fixed headline metrics (every evaluation run has the same names), the full
    scoreboard as a table artifact, and tags linking it to the model version and the
    training run that made the scores (the training run itself is left as trained).
    Returns the evaluation run's id."""
    client = MlflowClient()
    version = _version_of_run(family, training_run_id)
    tags = {
        RUN_KIND: "evaluation",
        "evaluation.training_run_id": training_run_id,
        "evaluation.model_version": version or "unknown",
        "evaluation.model": MODEL_NAMES[family],
        "data.evaluation_window": str(window),
        "code.version": code_version(),
    }
    name = f"{family} evaluation {window} (version {version or '?'})"
    exp = experiment_id(family, settings)
    with mlflow.start_run(experiment_id=exp, run_name=name, tags=tags) as run:
        mlflow.log_metrics(every_metric(headline))
        mlflow.log_text(board.write_csv(), "scoreboard/scoreboard.csv")
        mlflow.log_artifact(str(report), "scoreboard")
    run_id = str(run.info.run_id)
    if version is not None:
        client.set_model_version_tag(MODEL_NAMES[family], version, "evaluation.last_run_id", run_id)
    return run_id


def _version_of_run(family: str, run_id: str) -> str | None:
    """The registered version of `family` that training run `run_id` logged, if any."""
    try:
        found = MlflowClient().search_model_versions(
            f"name = '{MODEL_NAMES[family]}' and run_id = '{run_id}'"
        )
    except MlflowException:
        return None
    return str(found[0].version) if found else None


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
