# alliance-analysis: `make help` lists the targets.
# Everything runs inside .venv, created on first use from Python 3.11 and the package registries.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install report test lab clean

help: ## list the targets with a one-line description
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the workbench (only when pyproject.toml changed)

report: $(STAMP) ## run the whole pipeline on the demo data, writing reports/demo/
	$(BIN)/alliance run params/demo.yaml

test: $(STAMP) ## run the test suite
	$(BIN)/python -m pytest

lab: $(STAMP) ## open JupyterLab on notebooks/
	$(BIN)/jupyter lab --notebook-dir=notebooks

clean: ## remove generated reports and processed data (keeps .venv)
	rm -rf reports/*/ data/processed/*/
