# The course in two commands:  `make run`  and  `make test`.  Everything installs from this repository's files.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null || echo python3)
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
PIP    := $(PY) -m pip --disable-pip-version-check --no-input

# CI-sized runs use one thread per pytest worker (2 workers on 2 cores) and the `ci` profile.
TEST_ENV := AVLIB_PROFILE=ci OMP_NUM_THREADS=1 AVLIB_THREADS=1 PYTHONHASHSEED=0 TQDM_MININTERVAL=5 \
            PYDEVD_DISABLE_FILE_VALIDATION=1
NBVAL    := --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
            --nbval-cell-timeout 300 --nbval-kernel-startup-timeout 120
WORKERS  ?= 2

.PHONY: help setup run test test-fast data data-report bench lab exercises solutions lint check clean distclean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv and install everything (re-runs only when the requirements change)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	@echo "==> setup: $(VENV) with $$($(PYTHON) --version 2>&1) (about 1-2 minutes and 6 GB the first time)"
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 11) else \
	    "Python >= 3.11 is needed (found %d.%d); install it or run: make PYTHON=/path/to/python3.11" % v[:2])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -r requirements-nodeps.txt
	$(PIP) install -q --no-deps -e .
	@$(PY) -m avlib check >/dev/null || { $(PY) -m avlib check; exit 1; }
	@touch $(STAMP)
	@echo "==> setup done: $(VENV) is ready"

run: setup  ## the main job: generate the dataset, pretrain, fine-tune, evaluate (profile: $$AVLIB_PROFILE, default course)
	@echo "==> run: profile $${AVLIB_PROFILE:-course}"
	$(PY) -m avlib run  # generates (or reuses) the dataset itself, so results.json times generation too

test: setup  ## all tests: unit tests + nbval over solutions/ and notebooks/ (ci profile)
	@echo "==> test: exercise twins in sync, ci dataset, then pytest (unit tests + nbval) with $(WORKERS) workers"
	$(PY) .ci/notebooks.py check
	$(TEST_ENV) $(PY) -m avlib data
	$(TEST_ENV) $(PY) -m pytest -n $(WORKERS) --dist loadscope --durations=15 -rs $(NBVAL) tests solutions notebooks

test-fast: setup  ## unit tests only, without the slow ones
	$(TEST_ENV) $(PY) -m pytest -n $(WORKERS) -m "not slow" tests

data: setup  ## generate the dataset for the active profile (skipped if it is up to date)
	$(PY) -m avlib data

data-report: setup  ## dataset card and two quick baselines
	$(PY) -m avlib data-report

bench: setup  ## speed in one run (~4 min on a quiet machine): shared cores, data cache, fast vs reference maths
	$(PY) -m avlib bench $(BENCH_ARGS)

lab: setup  ## start JupyterLab on the course
	$(BIN)/jupyter lab --notebook-dir=.

exercises: setup  ## regenerate notebooks/ from solutions/
	$(PY) .ci/notebooks.py generate

solutions: setup  ## re-execute solutions/ in the course profile (refreshes committed outputs), then regenerate
	$(PY) .ci/notebooks.py execute --profile course
	$(PY) .ci/notebooks.py generate

lint: setup  ## ruff
	$(BIN)/ruff check avlib tests .ci data conftest.py

check: setup  ## print versions and [OK]/[FAIL] per package (paste into bug reports)
	$(PY) -m avlib check

clean:  ## remove generated data, runs and caches (keeps .venv)
	rm -rf data/generated runs .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

distclean: clean  ## also remove .venv
	rm -rf $(VENV)
