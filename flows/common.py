"""What every flow shares: retry only on I/O trouble, never on bad input."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cellpulse.errors import CellpulseError
from cellpulse.models.boosting import DaskTrainer, Trainer, train_local
from cellpulse.settings import Settings


def retry_on_io(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry OSErrors (a busy disk, a flaky mount, a server that is
    restarting), never a CellpulseError: bad input stays bad however often it is read."""
    try:
        state.result()
    except OSError:  # first: an unreachable store is both an OSError and a CellpulseError
        return True
    except CellpulseError:
        return False
    except Exception:
        return False
    return False


def dask_runner(settings: Settings) -> Any:
    """Prefect's Dask task runner for `settings.dask_address`: an existing scheduler, or a
    cluster of worker processes on this machine for 'local' (no dashboard: no open port)."""
    from prefect_dask import DaskTaskRunner

    if settings.dask_address == "local":
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": settings.dask_workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            }
        )
    return DaskTaskRunner(address=settings.dask_address)


@contextmanager
def booster_trainer(settings: Settings) -> Iterator[Trainer]:
    """How training fits boosters: here, or, with `dask_address` set, on the Dask cluster
    for training sets of at least `train.dask_min_rows` rows."""
    if not settings.dask_address:
        yield train_local
        return
    from distributed import Client, LocalCluster

    cluster = None
    if settings.dask_address == "local":
        cluster = LocalCluster(
            n_workers=settings.dask_workers,
            threads_per_worker=settings.train.n_jobs,
            processes=True,
            dashboard_address=None,
        )
        client = Client(cluster)
    else:
        client = Client(settings.dask_address)
    try:
        yield DaskTrainer(client, settings.train.dask_min_rows)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
