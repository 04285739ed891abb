# Two commands: `make test` and `make train`. Each creates .venv and installs mtst when missing,
# from the lock file: the exact versions CI tested, so a fresh machine next month gets the same.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := requirements-lock.txt
# torch's CPU build; pip finds it on the index named by your pip configuration (PyTorch's CPU
# index is https://download.pytorch.org/whl/cpu). An unpinned torch pulls a multi-GB CUDA build.
TORCH_SPEC := torch==2.13.0
UV_SPEC := uv==0.13.9

.PHONY: install lock test test-fast test-slow train lint format bench bench-quick clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-deps -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $(STAMP)

install: $(STAMP)

# Re-resolve every dependency (all extras, the build back-end, torch's CPU build) to today's
# newest versions inside pyproject.toml's ranges; commit the new lock once `make test` passes.
# PIP_FIND_LINKS, where pip's configuration sets it, is passed on so uv sees the same wheels.
lock:
	$(PYTHON) -m pip install --quiet "$(UV_SPEC)"
	printf '%s\n' "$(TORCH_SPEC)" "setuptools>=68" "wheel" | UV_FIND_LINKS="$${PIP_FIND_LINKS:-}" \
		$(PYTHON) -m uv pip compile pyproject.toml - --all-extras --python-version 3.11 \
		--no-header --quiet -o $(LOCK)

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
