# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create or update .venv first; the stamp makes that step instant when nothing changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint types unit bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[sidecar,ai,sandbox,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/daprforge demo

test: lint types unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	@command -v wrk >/dev/null || { echo "installing wrk (Debian package) for the load generator"; \
		(apt-get update -qq && apt-get install -y -qq wrk) >/dev/null; }
	$(BIN)/python bench/sidecar_state.py
	$(BIN)/python bench/pubsub.py
	$(BIN)/python bench/crud.py
	$(BIN)/python bench/events.py
	$(BIN)/python bench/ai_agent.py
	$(BIN)/python bench/sandbox.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
