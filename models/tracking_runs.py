"""The MLflow edge for runs beside a model's training run (imports mlflow, like every
`tracking*` module): a backtest's folds, a hyperparameter search's trials and a monitoring
pass's checks, each a parent run with one nested run per part. Folds and trials are open
while they fit, so their durations in MLflow are real."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import mlflow
import polars as pl
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from cellpulse.models import backtest, plots
from cellpulse.models.backtest import Fold
from cellpulse.models.tracking import (
    RUN_KIND,
    code_version,
    every_metric,
    experiment_id,
    experiment_named,
    finite,
)
from cellpulse.models.tracking_model import feature_inputs, frame_schema
from cellpulse.models.training import TRAIN_WINDOW_TAG, Candidate
from cellpulse.models.tuning import SEARCH_SPACE, Trial
from cellpulse.monitoring import MonitorReport
from cellpulse.settings import Settings, TrainSettings
from cellpulse.window import DayWindow


def _png(run_id: str, data: bytes, path: str) -> None:
    """Log PNG bytes as the artifact `path` of run `run_id`."""
    folder, name = path.rsplit("/", 1)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / name).write_bytes(data)
        MlflowClient().log_artifact(run_id, str(Path(tmp) / name), folder)


@contextmanager
def _run(exp: str, name: str, tags: dict[str, str], parent: str | None = None) -> Iterator[str]:
    """A run open for the duration of the block (FINISHED after it, FAILED if it raises),
    nested under `parent` if given. Runs are addressed by id, not as MLflow's active run,
    so several stay open at once (a parent per family, a fold inside one)."""
    client = MlflowClient()
    nesting = {"mlflow.parentRunId": parent} if parent else {}
    run_id = str(client.create_run(exp, run_name=name, tags={**tags, **nesting}).info.run_id)
    try:
        yield run_id
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")


def _log_windows(
    run_id: str,
    settings: Settings,
    windows: dict[str, tuple[date, date]],
    schema: Any,
    spec_hash: str,
) -> None:
    """The feature windows a fold or trial fitted and judged on, as its dataset inputs."""
    MlflowClient().log_inputs(run_id, datasets=feature_inputs(settings, windows, schema, spec_hash))


class BacktestRuns:
    """A backtest in MLflow: per family a parent run in its experiment, open from the
    family's first fold to its summary, and one nested run per fold, open while the fold
    trains, with the fold's full parameters and its training and test windows as dataset
    inputs."""

    def __init__(
        self, settings: Settings, tags: dict[str, str], features: pl.DataFrame, stack: ExitStack
    ) -> None:
        self.settings = settings
        self.tags = {**tags, RUN_KIND: "backtest", "code.version": code_version()}
        self.schema = frame_schema(features)
        self.spec_hash = tags.get("feature_spec_hash", "")
        self.parents: dict[str, str] = {}  # family -> parent run id
        self._stack = stack

    def _parent(self, family: str) -> str:
        if family not in self.parents:
            exp = experiment_id(family, self.settings)
            self.parents[family] = self._stack.enter_context(
                _run(exp, f"{family} backtest", self.tags)
            )
        return self.parents[family]

    def fold(self, family: str, index: int, fit: Callable[[], Fold]) -> Fold:
        """Fold `index` of `family`, fitted by `fit` inside its own nested run."""
        parent = self._parent(family)
        exp = experiment_id(family, self.settings)
        with _run(exp, f"fold {index}", self.tags, parent) as run_id:
            fold = fit()
            client = MlflowClient()
            fold_tags = {
                TRAIN_WINDOW_TAG: str(DayWindow(*fold.train)),
                "data.holdout_window": str(DayWindow(*fold.test)),
            }
            if fold.skipped:
                fold_tags["fold.skipped"] = fold.skipped
            for key, value in fold_tags.items():
                client.set_tag(run_id, key, value)
            mlflow_params = {"fold": fold.index, **fold.params}
            client.log_batch(run_id, params=[Param(k, str(v)) for k, v in mlflow_params.items()])
            _log_metrics(run_id, every_metric(fold.metrics))
            windows = {"training": fold.train, "holdout": fold.test}
            _log_windows(run_id, self.settings, windows, self.schema, self.spec_hash)
        return fold

    def finish(self, family: str, folds: list[Fold]) -> None:
        """The family's parent: each metric's mean and spread over the folds, its name
        with the tested days, and the primary metric per fold as a plot."""
        parent = self._parent(family)
        client = MlflowClient()
        first, last = folds[0].test[0], folds[-1].test[1]
        client.set_tag(
            parent, "mlflow.runName", f"{family} backtest {len(folds)} folds, tests {first}..{last}"
        )
        client.log_param(parent, "folds", len(folds))
        client.log_param(parent, "holdout_days", self.settings.train.holdout_days)
        summary = backtest.summarise(folds)
        _log_metrics(
            parent,
            finite(
                {f"{k}.mean": m for k, (m, _, _) in summary.items()}
                | {f"{k}.std": sd for k, (_, sd, _) in summary.items()}
            ),
        )
        series, metric = backtest.per_fold(folds)
        if series:
            labels = [f"fold {f.index}" for f in folds]
            figure = plots.per_run(series, labels, metric, f"{family} backtest: {metric} per fold")
            _png(parent, plots.png(figure), "plots/per_fold.png")


@contextmanager
def backtest_runs(
    settings: Settings, tags: dict[str, str], features: pl.DataFrame
) -> Iterator[BacktestRuns]:
    """Open a backtest's runs for the block; every parent is closed when it ends."""
    with ExitStack() as stack:
        yield BacktestRuns(settings, tags, features, stack)


def _log_metrics(run_id: str, metrics: dict[str, float]) -> None:
    stamp = int(time.time() * 1000)
    batch = [Metric(k, v, stamp, 0) for k, v in metrics.items()]
    for i in range(0, len(batch), 500):  # the tracking store takes batches of at most 1000
        MlflowClient().log_batch(run_id, metrics=batch[i : i + 500])


class TuningRuns:
    """A hyperparameter search in MLflow: a parent run open for the whole search (the
    space, the trial count, the best primary metric, which trial won, a plot of the primary
    metric per trial) and one nested run per trial, open while the trial fits, with the
    trial's full parameters, hold-out metrics, fitting time and data windows."""

    def __init__(self, family: str, settings: Settings, tags: dict[str, str], run_id: str):
        self.family = family
        self.settings = settings
        self.tags = tags
        self.run_id = run_id
        self.trial_runs: list[str] = []  # by trial number

    def tracked(self, fit: Callable[..., Candidate]) -> Callable[..., Candidate]:
        """`fit`, each call inside the next trial's nested run (the search fits trials in
        order, so the n-th call is trial n); arguments after the settings pass through."""

        def fit_in_run(train: TrainSettings, *data: Any) -> Candidate:
            number = len(self.trial_runs)
            exp = experiment_id(self.family, self.settings)
            tags = {"tuning.trial": str(number), "code.version": code_version()}
            name = f"trial {number}: " + " ".join(
                f"{k}={getattr(train, k)}" for k in SEARCH_SPACE if hasattr(train, k)
            )
            with _run(exp, name, tags, self.run_id) as run_id:
                self.trial_runs.append(run_id)
                started = time.monotonic()
                candidate = fit(train, *data)
                seconds = time.monotonic() - started
                client = MlflowClient()
                client.log_batch(
                    run_id, params=[Param(k, str(v)) for k, v in candidate.params.items()]
                )
                _log_metrics(run_id, every_metric(candidate.metrics) | {"fit_seconds": seconds})
                for key, value in candidate.split.tags().items():
                    client.set_tag(run_id, key, value)
                split = candidate.split
                windows = {"training": split.train_days, "holdout": split.holdout_days}
                schema = frame_schema(split.holdout)
                spec_hash = self.tags.get("feature_spec_hash", candidate.model.spec_hash)
                _log_windows(run_id, self.settings, windows, schema, spec_hash)
            return candidate

        return fit_in_run

    def finish(self, trials: list[Trial], chosen: Trial) -> None:
        """The search's summary on the parent, and which trial won on each trial run."""
        client = MlflowClient()
        primary = chosen.candidate.rule.primary
        client.set_tag(self.run_id, "mlflow.runName", f"{self.family} tuning, {len(trials)} trials")
        client.set_tag(self.run_id, "tuning.best_trial", str(chosen.number))
        params = (
            {"trials": len(trials), "primary_metric": primary}
            | {f"space.{k}": ",".join(map(str, v)) for k, v in SEARCH_SPACE.items()}
            | {f"best.{k}": v for k, v in chosen.params.items()}
        )
        client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        _log_metrics(self.run_id, finite({f"best_{primary}": chosen.primary}))
        for trial in trials:
            if trial.number < len(self.trial_runs):
                client.set_tag(self.trial_runs[trial.number], "tuning.chosen", str(trial is chosen))
        labels = [f"trial {t.number}" for t in trials]
        figure = plots.per_run(
            {"model": [t.primary for t in trials]},
            labels,
            primary,
            f"{self.family} tuning: {primary} per trial (trial {chosen.number} chosen)",
            highlight=[t.number for t in trials].index(chosen.number),
        )
        _png(self.run_id, plots.png(figure), "plots/per_trial.png")


@contextmanager
def tuning_runs(family: str, settings: Settings, tags: dict[str, str]) -> Iterator[TuningRuns]:
    """Open a search's parent run for the block (`TuningRuns.tracked` nests the trials)."""
    exp = experiment_id(family, settings)
    all_tags = {**tags, RUN_KIND: "tuning", "code.version": code_version()}
    with _run(exp, f"{family} tuning", all_tags) as run_id:
        yield TuningRuns(family, settings, tags, run_id)


MONITORING_EXPERIMENT = "cellpulse-monitoring"


def log_monitoring(report: MonitorReport, settings: Settings) -> str:
    """One MLflow run per monitoring pass, with one nested run per check (value, threshold,
    crossed, and the check's detail table). Returns the parent run id."""
    exp = experiment_named(MONITORING_EXPERIMENT, settings)
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
                    finite({"value": check.value, "breached": float(check.breached)})
                )
                mlflow.log_text(check.summary + "\n", "summary.txt")
                if check.detail.height:
                    mlflow.log_text(check.detail.write_csv(), f"{check.name}.csv")
    return str(parent.info.run_id)
