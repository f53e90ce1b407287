# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv and
# install exactly the pinned versions in requirements.lock first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP    := $(BIN)/pip --disable-pip-version-check --quiet

.PHONY: install demo test browser lint bench lock clean

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.lock
	$(PIP) install --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install cellpulse with pinned dependencies

demo: $(STAMP)  ## simulate a network and run the whole pipeline on it
	$(BIN)/cellpulse demo

test: $(STAMP) browser  ## run the test suite
	$(BIN)/python -m pytest

# The web page is tested in a real headless Chromium (Debian's, driven by Selenium). Installed
# here when missing and this user may install packages; otherwise that one test is skipped
# and says why.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	       && (apt-get install -y -q chromium chromium-driver >/dev/null \
	           || (apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null)) ; } \
	  || echo "note: chromium/chromedriver not installed; the browser test will be skipped"

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
