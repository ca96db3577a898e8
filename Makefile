# Every target does its own set-up from a fresh clone: a venv at .venv/ (venv + pip:
# pip finds the local CPU wheel of torch, uv and poetry would download a CUDA build).
# The training stack is installed with space/Dockerfile's pins as constraints
# (`spacetrain pins`), so tests run the versions the Space runs.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
# pytest-xdist workers. The e2e tests mostly wait (on sockets, subprocesses, a trainer
# with one thread), so more workers than cores pay off; `make test WORKERS=0` runs serially.
WORKERS ?= 4

.PHONY: help setup space-lint rehearse test test-fast lint format check clean workflows-lint \
	screenshots

help:
	@echo "make rehearse     the main job: the whole pipeline offline (localhub, tiny model)"
	@echo "make space-lint   lint space/ against policy/space.yaml"
	@echo "make test         ruff check, ruff format --check, every test (what CI runs)"
	@echo "make test-fast    the unit tests only (not e2e: no sockets, processes or torch)"
	@echo "make format       ruff format + ruff check --fix"
	@echo "make setup        only create .venv/ and install everything"
	@echo "make workflows-lint  zizmor (offline) and actionlint + shellcheck on .github/workflows"
	@echo "make screenshots  rerun the Space's browser tests, rewriting docs/space-ui-*.png"

setup: $(STAMP)

$(STAMP): pyproject.toml space/Dockerfile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e .
	$(BIN)/spacetrain pins space/Dockerfile > $(VENV)/constraints.txt
	$(PIP) install -c $(VENV)/constraints.txt -e '.[train,dev]'
	touch $@

space-lint: $(STAMP)
	$(BIN)/spacetrain lint space/

# The whole pipeline, offline: localhub stands in for the Hub and the Space, the real
# space/ app trains a tiny model on the CPU, then fetch, evaluate, gate, promote, release.
rehearse: $(STAMP)
	$(BIN)/spacetrain rehearse --report reports/rehearsal.json \
		--markdown reports/rehearsal.md

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/pytest -n $(WORKERS)

# The unit tests: about 8 s, serially (workers would only add their start-up).
test-fast: $(STAMP)
	$(BIN)/pytest -m "not e2e"

# Also run by tests/test_workflows.py (so by `make test`); this target prints the findings.
workflows-lint: $(STAMP)
	$(BIN)/zizmor --offline --persona auditor .github/workflows
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/actionlint

# The README's pictures of the Space page come from its browser tests (real app, tiny
# model, the machine's Chromium): rerun them after a UI change and commit docs/*.png.
screenshots: $(STAMP)
	SPACETRAIN_SCREENSHOTS=docs $(BIN)/pytest -q tests/space/test_ui_browser.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache scripts/*.egg-info
