# markq: `make demo` runs the main job, `make test` runs the tests. Both set everything up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint install services bench-tokens compose-check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

services:
	bash scripts/ensure-services.sh --postgres

demo: install
	bash scripts/ensure-services.sh
	$(PY) -m client.demo

test: install services
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench-tokens: install
	$(PY) -m bench.tokens

compose-check: install
	$(PY) scripts/check_compose.py

clean:
	rm -rf .markq
