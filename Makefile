# alliance-analysis: `make help` lists the targets.
# Everything runs inside .venv, created on first use from Python 3.11 and the package registries.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
LOCK := requirements.lock
# Byte-compile the workbench's own modules (pip compiles the packages it installs, not an
# editable source tree; with PYTHONDONTWRITEBYTECODE set, as on CI, every process would compile
# them again on import, about 0.4 s each). Only changed files are compiled again.
COMPILE := $(BIN)/python -m compileall -q src/alliance_analysis

.PHONY: help install report test lab clean lock reproduce bench power

help: ## list the targets with a one-line description
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'

# The exact versions the test suite passed with (requirements.lock), then the workbench itself.
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@$(COMPILE)
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the locked versions (only when they changed)

lock: ## re-resolve the newest allowed versions in a scratch venv, run the tests, write requirements.lock
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e ".[dev]"
	.venv-lock/bin/python -m pytest -q
	( echo "# Exact versions with which the test suite passed (Python 3.11, Linux x86_64)."; \
	  echo "# Written by \`make lock\` on $$(date -u +%Y-%m-%d); installed by make install/report/test."; \
	  .venv-lock/bin/python -m pip freeze --exclude-editable ) > $(LOCK)
	rm -rf .venv-lock

report: $(STAMP) ## run the whole pipeline on the demo data, writing reports/demo/
	@$(COMPILE)
	$(BIN)/alliance run params/demo.yaml

test: $(STAMP) ## check the architecture contract (pyproject.toml), then run the test suite
	@$(COMPILE)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

reproduce: $(STAMP) ## reproduce published reference results, writing reports/reproduce/
	$(BIN)/alliance reproduce --out reports/reproduce

bench: $(STAMP) ## the speed targets side by side (engine vs lme4, SEM vs lavaan, 10M rows, power and bootstrap on Dask, the demo report), writing reports/bench/summary.md (~40 min)
	@$(COMPILE)
	$(BIN)/python benchmarks/bench_engine.py
	$(BIN)/python benchmarks/bench_engine.py --big
	$(BIN)/python benchmarks/bench_sem.py
	$(BIN)/python benchmarks/bench_power.py --study
	$(BIN)/python benchmarks/bench_bootstrap.py
	$(BIN)/python benchmarks/bench_report.py
	$(BIN)/python benchmarks/bench_summary.py

power: $(STAMP) ## Monte Carlo power of the designs in params/power.yaml (resumes if interrupted)
	$(BIN)/alliance power params/power.yaml

lab: $(STAMP) ## open JupyterLab on notebooks/
	$(BIN)/jupyter lab --notebook-dir=notebooks

clean: ## remove generated reports and processed data (keeps .venv)
	rm -rf reports/*/ data/processed/*/
