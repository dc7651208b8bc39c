# markq: `make demo` runs the main job, `make test` runs the tests. Both set everything up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint install services bench-tokens compose-check clean lock

# The exact versions every install uses (the lock), then markq itself without resolving again.
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# After changing a dependency in pyproject.toml: resolve again and write the lock.
lock: install
	$(PY) -m pip install -q "pip-tools>=7.4,<8"
	$(VENV)/bin/pip-compile -q --extra test --strip-extras --no-emit-index-url --no-emit-find-links \
		--no-emit-trusted-host --output-file requirements.lock pyproject.toml

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
