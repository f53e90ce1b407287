"""Shared fixtures. Everything a test writes lives under its own tmp_path."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime

import polars as pl
import pytest

from cellpulse.runtime import DEFAULTS, TELEMETRY_OFF

# Before Prefect or MLflow are imported by any test module: nothing may phone home.
os.environ.update(TELEMETRY_OFF)
for _key, _value in DEFAULTS.items():
    os.environ.setdefault(_key, _value)

from cellpulse.settings import Settings, TrainSettings  # noqa: E402
from cellpulse.simulator import (  # noqa: E402
    SimulationConfig,
    Topology,
    build_topology,
    iter_days,
    make_event,
)

START = date(2026, 1, 5)  # a Monday
OUTAGE_CELL = 4


def tiny_settings(home: os.PathLike[str] | str) -> Settings:
    """Tiny models, one thread: tests prove behaviour, not quality at scale."""
    return Settings(
        home=home, train=TrainSettings(num_trees=25, n_jobs=1, holdout_days=2, min_data_in_leaf=20)
    )


def free_port() -> int:
    """A loopback port nothing listens on right now (for servers the tests start)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def settings(tmp_path) -> Settings:
    return tiny_settings(tmp_path / "home")


@pytest.fixture
def restore_environ():
    """The CLI prepares os.environ for itself; put it back after the test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


TINY = SimulationConfig(cells=12, days=9, start=START, seed=11, events_per_cell_day=0.0)


def outage_events(topo: Topology, day: int = 8, hours: float = 6.0) -> pl.DataFrame:
    """A known outage on OUTAGE_CELL, late in the simulation (inside the hold-out)."""
    from cellpulse.simulator import EVENT_SCHEMA

    start = datetime(START.year, START.month, START.day, 9, tzinfo=UTC)
    start = start.replace(day=START.day + day)
    return pl.DataFrame(
        [make_event(topo, OUTAGE_CELL, "outage", start, hours)], schema=EVENT_SCHEMA
    )


@pytest.fixture(scope="session")
def tiny_network() -> tuple[Topology, pl.DataFrame, pl.DataFrame]:
    """(topology, events, all KPIs) of a 12-cell, 9-day network with one known outage."""
    topo = build_topology(TINY)
    events = outage_events(topo)
    kpis = pl.concat([day for _, day in iter_days(TINY, topo, events)])
    return topo, events, kpis


# Many labelled faults of every type: enough for the supervised fault classifier to learn.
LABELLED = SimulationConfig(cells=40, days=12, start=START, seed=5, events_per_cell_day=0.06)


@pytest.fixture(scope="session")
def labelled_network() -> tuple[pl.DataFrame, pl.DataFrame]:
    """(events, features) of a 40-cell, 12-day network with about 30 labelled events."""
    from cellpulse.features.builder import build_features
    from cellpulse.features.spec import default_spec
    from cellpulse.simulator import draw_events

    topo = build_topology(LABELLED)
    events = draw_events(topo, LABELLED)
    kpis = pl.concat([day for _, day in iter_days(LABELLED, topo, events)])
    return events, build_features(kpis, default_spec(15), rop_minutes=15, min_denominator=10)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """A real PostgreSQL server for this test session: initdb in a temporary folder, a free
    loopback port, stopped at the end. Yields the URL of its maintenance database."""
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    bindir = next(
        (
            Path(found).resolve().parent
            for found in (
                shutil.which("initdb"),
                *sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
            )
            if found
        ),
        None,
    )
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) are not installed; make test installs them"
        )
    # PostgreSQL refuses to run as root: run it as nobody, in a folder nobody may enter.
    as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="cellpulse-pg-"))
    root.chmod(0o755)
    if as_user:
        shutil.chown(root, "nobody")
    port = free_port()
    data = root / "data"
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True)  # noqa: E731
    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "cellpulse", "--no-sync")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(root / "log"),
        "-w",
        "start",
    )
    try:
        yield f"postgresql://cellpulse@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the session's server for one test."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    yield postgres_server.rsplit("/", 1)[0] + f"/{name}"
