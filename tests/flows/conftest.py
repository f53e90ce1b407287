"""End-to-end tests run real flows against one Prefect test server per session and a fresh
MLflow SQLite store per test (under the test's tmp_path)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def prefect_server(tmp_path_factory):
    import os

    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
