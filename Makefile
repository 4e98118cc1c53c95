# crmscore front door: `make demo` runs the main job, `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: help setup browser postgres demo test bench lint clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-6s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,spark]'
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install crmscore with its test tools

demo: setup  ## run the main job on the embedded synthetic data
	$(VENV)/bin/crmscore run

browser:  ## install headless Chromium for the report's browser test (the test is skipped without it)
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	  || command -v google-chrome >/dev/null 2>&1 \
	  || { command -v apt-get >/dev/null 2>&1 && export DEBIAN_FRONTEND=noninteractive \
	       && (apt-get install -y chromium >/dev/null 2>&1 \
	           || (apt-get update -qq && apt-get install -y chromium >/dev/null 2>&1)); } \
	  || echo "chromium not installed: the browser checks in tests/test_report.py will be skipped"

postgres:  ## install PostgreSQL for the warehouse tests (they are skipped without it)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
	  || { command -v apt-get >/dev/null 2>&1 && export DEBIAN_FRONTEND=noninteractive \
	       && (apt-get install -y postgresql >/dev/null 2>&1 \
	           || (apt-get update -qq && apt-get install -y postgresql >/dev/null 2>&1)); } \
	  || echo "postgresql not installed: the PostgreSQL checks in tests/test_warehouse.py will be skipped"

test: setup browser postgres  ## run the test suite (two workers, one test file each at a time)
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -n 2 --dist loadfile

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)  ## run the benchmarks; results go to reports/benchmarks/
	@set -e; for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script; done

lint: setup  ## static checks
	$(VENV)/bin/ruff check src tests benchmarks pipelines

clean:  ## remove generated data, models and reports (keeps reports/benchmarks)
	rm -rf data/simulated models/mlflow.db models/mlartifacts reports/validation reports/scores reports/review
