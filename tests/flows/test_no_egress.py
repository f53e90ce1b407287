"""The sovereign promise: the whole demo — CLI, Prefect's server process, MLflow — runs without
a single connection or DNS lookup beyond loopback, and the pages `cellpulse api` serves make
a browser fetch nothing from beyond it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

GUARD = Path(__file__).resolve().parents[1] / "egress"


def test_demo_makes_no_connection_beyond_loopback(tmp_path):
    log = tmp_path / "egress.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(GUARD), env.get("PYTHONPATH", "")]),
            "CELLPULSE_EGRESS_LOG": str(log),
        }
    )
    # The guard itself must work, or a clean log proves nothing.
    probe = subprocess.run(
        [sys.executable, "-c", "import socket; socket.getaddrinfo('example.org', 443)"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.returncode != 0 and "egress refused" in probe.stderr
    log.unlink()

    cli = Path(sys.executable).with_name("cellpulse")
    run = subprocess.run(
        [str(cli), "demo", "--home", str(tmp_path / "home")],  # exactly what `make demo` runs
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "done in" in run.stdout
    assert "fault classifier: blend (" in run.stdout  # the demo's labels train it
    assert not log.exists(), log.read_text()


# Loopback addresses a page may name, and XML namespace names: identifiers a browser never
# fetches (document.createElementNS).
LOCAL = re.compile(r"^https?://(127\.0\.0\.1|localhost|\[::1\])([:/]|$)")
NAMESPACES = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
ABSOLUTE = re.compile(r"https?://[^\s\"'`<>()\\]+")
PROTOCOL_RELATIVE = re.compile(r"""(?:(?:src|href|action)\s*=\s*["']?|url\(\s*["']?)//[^/]""")


def outside_urls(text: str) -> list[str]:
    """URLs in a page or asset that a browser would fetch from beyond the host."""
    absolute = [u for u in ABSOLUTE.findall(text) if u not in NAMESPACES and not LOCAL.match(u)]
    return absolute + PROTOCOL_RELATIVE.findall(text)


def test_the_ops_page_and_api_docs_load_nothing_from_beyond_loopback(tmp_path):
    """What a browser fetches from `cellpulse api` without a token (the page, its assets, the
    OpenAPI schema, and the interactive docs if they are served) names no outside URL: no
    CDN script, no favicon from the framework's site."""
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from cellpulse.api import create_app
    from cellpulse.settings import ApiSettings
    from tests.conftest import tiny_settings

    token = "t" * 40
    settings = tiny_settings(tmp_path / "home").model_copy(
        update={"api": ApiSettings(token=SecretStr(token))}
    )
    client = TestClient(create_app(settings))
    web = resources.files("cellpulse") / "web"
    assets = [f"/static/{p.name}" for p in web.iterdir() if p.name.endswith((".js", ".css"))]
    fetched = {}
    for route in ["/", "/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect", *assets]:
        for headers in ({}, {"Authorization": f"Bearer {token}"}):
            response = client.get(route, headers=headers)
            if response.status_code == 200:
                fetched[route] = response.text
    assert {"/", "/openapi.json"} <= set(fetched) and len(assets) >= 2
    leaks = {route: outside_urls(text) for route, text in fetched.items()}
    assert not any(leaks.values()), leaks
