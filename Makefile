# Two commands: `make test` and `make train`. Each creates .venv and installs mtst when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_SPEC := torch==2.13.0

.PHONY: install test test-fast test-slow train lint format bench bench-quick clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"
	$(PY) -m pytest -q -m slow || test $$? -eq 5  # 5: no slow tests collected

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -x

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow || test $$? -eq 5

train: $(STAMP)
	$(PY) train.py experiment=quickstart

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests scripts train.py evaluate.py

format: $(STAMP)
	$(VENV)/bin/ruff format src tests scripts train.py evaluate.py

bench: $(STAMP)
	$(PY) -m benchmarks

bench-quick: $(STAMP)
	$(PY) -m benchmarks --quick

clean:
	rm -rf $(VENV) logs .pytest_cache
