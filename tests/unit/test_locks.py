"""The lock files: a server installs only what cellpulse runs (requirements.lock), the
test and lint tools live in requirements-dev.lock, and the two agree with pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_EXTRAS = ("postgres", "dask", "compiled")  # the Makefile's RUNTIME_EXTRAS
TEST_TOOLS = {"pytest", "selenium", "schemathesis", "hypothesis", "ruff", "mypy", "pip-audit"}


def _pins(name: str) -> dict[str, Version]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            package, _, version = line.partition("==")
            assert version, f"{name}: {line!r} is not pinned with =="
            pins[canonicalize_name(package)] = Version(version)
    return pins


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_runtime_lock_holds_no_test_or_lint_tool():
    runtime = _pins("requirements.lock")
    assert not TEST_TOOLS & runtime.keys()
    assert _pins("requirements-dev.lock").keys() >= TEST_TOOLS


def test_the_runtime_lock_pins_every_runtime_dependency_within_pyproject():
    runtime = _pins("requirements.lock")
    project = _project()
    extras = project["optional-dependencies"]
    wanted = project["dependencies"] + [r for e in RUNTIME_EXTRAS for r in extras[e]]
    for spec in map(Requirement, wanted):
        name = canonicalize_name(spec.name)
        assert name in runtime, f"{spec} is not pinned in requirements.lock"
        assert spec.specifier.contains(runtime[name], prereleases=True), (
            f"requirements.lock pins {name}=={runtime[name]}, outside {spec}"
        )


def test_the_dev_lock_adds_tools_only_and_pins_the_dev_extra():
    runtime, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    assert not runtime.keys() & dev.keys(), "a package pinned in both lock files"
    both = runtime | dev
    for spec in map(Requirement, _project()["optional-dependencies"]["dev"]):
        name = canonicalize_name(spec.name)
        assert name in both and spec.specifier.contains(both[name], prereleases=True), spec


def test_the_container_installs_the_runtime_lock_only():
    dockerfile = (ROOT / "infra" / "Dockerfile").read_text()
    assert "requirements.lock" in dockerfile and "requirements-dev.lock" not in dockerfile
