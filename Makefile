# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv and
# install exactly the pinned versions first: requirements.lock (what cellpulse runs on, all a
# server gets), plus requirements-dev.lock (test and lint tools) for `make test`/`make lint`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEV_STAMP := $(VENV)/.dev-installed-stamp
PIP    := $(BIN)/pip --disable-pip-version-check --quiet
# The extras a production install uses (ops store on PostgreSQL, Dask, compiled scoring).
RUNTIME_EXTRAS := postgres,dask,compiled
LOCK_VENV := $(VENV)-lock

.PHONY: install demo test test-deps lint audit bench lock clean

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.lock
	$(PIP) install --no-deps --no-build-isolation -e .
	@touch $(STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.lock
	$(PIP) install -r requirements.lock -r requirements-dev.lock
	@touch $(DEV_STAMP)

install: $(STAMP)  ## create .venv and install cellpulse with its runtime pins only

demo: $(STAMP)  ## simulate a network and run the whole pipeline on it
	$(BIN)/cellpulse demo

test: $(DEV_STAMP) test-deps  ## run the test suite
	$(BIN)/python -m pytest

# Two tests need system programs: the web page runs in a real headless Chromium (Debian's,
# driven by Selenium) and the ops store is checked against a real PostgreSQL server that the
# tests start themselves. Installed here when missing and this user may install packages;
# otherwise those tests are skipped and say why.
SYSTEM_PACKAGES := chromium chromium-driver postgresql
test-deps:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null \
	    && { command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -q $(SYSTEM_PACKAGES) >/dev/null 2>&1 \
	  || { apt-get update -q >/dev/null && apt-get install -y -q $(SYSTEM_PACKAGES) >/dev/null; } \
	  || echo "note: could not install $(SYSTEM_PACKAGES); their tests will be skipped"; \
	else echo "note: $(SYSTEM_PACKAGES) not installed; their tests will be skipped"; fi

lint: $(DEV_STAMP)  ## ruff, mypy and the dependency audit
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(MAKE) --no-print-directory audit

# Known vulnerabilities in the runtime pins (pip-audit; needs the vulnerability service:
# says NOT AUDITED when it cannot be reached, an error with AUDIT_STRICT=1).
audit: $(DEV_STAMP)  ## check requirements.lock against known vulnerabilities
	$(BIN)/python infra/audit.py requirements.lock

bench: $(STAMP)  ## run the benchmarks and record them in bench/RESULTS.md
	$(BIN)/python -m bench.run

# Re-pin both lock files to the newest versions pyproject.toml allows, resolved in a
# throwaway venv: first the runtime (cellpulse with RUNTIME_EXTRAS), then the dev extra on
# top of it with the runtime pins held (-c), so the two files never pin a package twice.
lock:  ## re-pin requirements.lock and requirements-dev.lock (needs the package index)
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --disable-pip-version-check --quiet ".[$(RUNTIME_EXTRAS)]"
	{ sed -n '/^#/p' requirements.lock; $(LOCK_VENV)/bin/pip freeze --all | grep -iv '^cellpulse' \
	  | LC_ALL=C sort -f; } > $(LOCK_VENV)/runtime.lock
	$(LOCK_VENV)/bin/pip install --disable-pip-version-check --quiet -c $(LOCK_VENV)/runtime.lock ".[dev]"
	{ sed -n '/^#/p' requirements-dev.lock; $(LOCK_VENV)/bin/pip freeze --all | grep -iv '^cellpulse' \
	  | grep -vxFf $(LOCK_VENV)/runtime.lock | LC_ALL=C sort -f; } > $(LOCK_VENV)/dev.lock
	mv $(LOCK_VENV)/runtime.lock requirements.lock && mv $(LOCK_VENV)/dev.lock requirements-dev.lock
	rm -rf $(LOCK_VENV)

clean:  ## remove the venvs and the demo home
	rm -rf $(VENV) $(LOCK_VENV) .cellpulse
