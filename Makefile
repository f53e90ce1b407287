# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv and
# install exactly the pinned versions in requirements.lock first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP    := $(BIN)/pip --disable-pip-version-check --quiet

.PHONY: install demo test lint bench lock clean

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.lock
	$(PIP) install --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install cellpulse with pinned dependencies

demo: $(STAMP)  ## simulate a network and run the whole pipeline on it
	$(BIN)/cellpulse demo

test: $(STAMP)  ## run the test suite
	$(BIN)/python -m pytest

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
