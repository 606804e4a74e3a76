# tritonops: `make demo` runs the main job, `make test` the whole suite. Both set themselves up.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
TRITONOPS := $(VENV)/bin/tritonops
STAMP := $(VENV)/.bootstrap-stamp

.PHONY: setup test test-chart test-kind test-gpu demo lint docs docs-check bench clean

setup: $(STAMP)

# Re-run the bootstrap only when what it installs changed.
$(STAMP): pyproject.toml scripts/bootstrap.sh
	@bash scripts/bootstrap.sh
	@touch $(STAMP)

# Test files run on up to 4 workers (pytest-xdist), a file's tests on one worker: most wait on a
# Triton, a probe period or a rule evaluation, so two workers nearly halve the wall time even on two
# cores. Each worker draws its runtimes' ports from its own share (tests/runtime/conftest.py).
PYTEST_WORKERS := -n auto --maxprocesses 4 --dist loadfile

test: setup lint
	$(PY) -m pytest -q $(PYTEST_WORKERS)

test-chart: setup
	$(PY) -m pytest -q $(PYTEST_WORKERS) tests/chart

# The kind tier (ci/README.md): a kind cluster with a mocked GPU node, the real Triton image, the
# chart installed with helm. Where docker, kind, helm or kubectl are missing: one skip, the reason.
test-kind: setup
	PY=$(PY) bash ci/kind.sh

# The prod pod's Triton container on a real NVIDIA GPU; one skip, with the reason, where none is visible.
test-gpu: setup
	bash scripts/test-gpu.sh

demo: setup
	$(TRITONOPS) demo

lint: setup
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/ruff format --check src tests bench examples
	$(VENV)/bin/mypy
	@$(MAKE) --no-print-directory docs-check

docs: setup
	$(TRITONOPS) docs --write

docs-check: setup
	$(TRITONOPS) docs --check

bench: setup
	$(PY) bench/render.py
	$(PY) bench/validate.py
	$(PY) bench/runtime.py
	$(PY) bench/serving.py
	$(PY) bench/rules.py
	$(PY) bench/promotion.py
	$(PY) bench/tune.py

clean:
	rm -rf $(VENV) .tritonops bench/results
