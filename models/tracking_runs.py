"""The MLflow edge for runs beside a model's training run (imports mlflow, like every
`tracking*` module): a backtest's folds, a hyperparameter search's trials and a monitoring
pass's checks, each a parent run with one nested run per part."""

from __future__ import annotations

import mlflow

from cellpulse.models import backtest
from cellpulse.models.backtest import Fold
from cellpulse.models.tracking import code_version, experiment_id, experiment_named, finite
from cellpulse.models.training import TRAIN_WINDOW_TAG
from cellpulse.models.tuning import SEARCH_SPACE, Trial
from cellpulse.monitoring import MonitorReport
from cellpulse.settings import Settings
from cellpulse.window import DayWindow


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
            finite(
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
                mlflow.log_metrics(finite(fold.metrics))
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
        mlflow.log_metrics(finite({f"best_{primary}": chosen.primary}))
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
                mlflow.log_metrics(finite(trial.candidate.metrics))
                mlflow.log_metric("fit_seconds", trial.seconds)
    return str(parent.info.run_id)


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
