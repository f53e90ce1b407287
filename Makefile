# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv and
# install exactly the pinned versions in requirements.lock first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP    := $(BIN)/pip --disable-pip-version-check --quiet

.PHONY: install demo test test-deps lint bench lock clean

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.lock
	$(PIP) install --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install cellpulse with pinned dependencies

demo: $(STAMP)  ## simulate a network and run the whole pipeline on it
	$(BIN)/cellpulse demo

test: $(STAMP) test-deps  ## run the test suite
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

lint: $(STAMP)  ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)  ## run the benchmarks and record them in bench/RESULTS.md
	$(BIN)/python -m bench.run

lock: $(STAMP)  ## re-pin requirements.lock from the current .venv
	$(BIN)/pip freeze --all --exclude-editable | grep -v '^cellpulse' > requirements.lock

clean:  ## remove the venv and the demo home
	rm -rf $(VENV) .cellpulse
