# `make run` and `make test` are all a newcomer needs: both set everything up on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# DVC gets its own environment: its hydra-core pins antlr4-python3-runtime 4.9, which breaks Dagster's
# asset-selection parser (4.13). Its `dvc` program is linked into .venv/bin. The lock includes dvc-s3 (s3:// remotes).
DVC_VENV := .dvcenv
DVC_INSTALLED := $(DVC_VENV)/.installed
export MLPLATFORM_DATA_DIR ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(CURDIR)/.dagster
# The UI has no login: it listens on this machine only unless told otherwise on the command line
# (`make run HOST=0.0.0.0`). `:=`, not `?=`: a HOST variable some shells export never widens it.
HOST := 127.0.0.1
PORT ?= 3000

.PHONY: install seed materialize run test benchmark benchmark-drift clean

install: $(INSTALLED) $(DVC_INSTALLED)

# The lock pins every package; the project itself is installed without touching those pins.
$(INSTALLED): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(DVC_INSTALLED): requirements-dvc.lock $(INSTALLED)
	$(PYTHON) -m venv $(DVC_VENV)
	$(DVC_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DVC_VENV)/bin/python -m pip install --quiet -r requirements-dvc.lock
	ln -sf $(CURDIR)/$(DVC_VENV)/bin/dvc $(BIN)/dvc
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

seed: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/mlplatform init
	$(BIN)/mlplatform seed

materialize: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/mlplatform materialize

run: install seed $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h $(HOST) -p $(PORT)

# Two pytest workers, each taking whole test files (a module's fixtures stay in one process): on 2 cores, one
# fresh clone, 1114 s of pytest against 1300 s serially. `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --cov --cov-report=term-missing

BENCHMARK_INSTALLED := $(VENV)/.benchmark-installed

$(BENCHMARK_INSTALLED): requirements-benchmark.lock $(INSTALLED)
	$(BIN)/python -m pip install --quiet -r requirements-benchmark.lock -c requirements.lock
	touch $@

benchmark: install $(BENCHMARK_INSTALLED)
	$(BIN)/python benchmarks/pipeline_throughput.py

# Evidently 0.7 needs pandas < 3, so the drift benchmark runs it from its own environment, on the same files.
EVIDENTLY_VENV := .evenv
$(EVIDENTLY_VENV)/.installed: requirements-evidently.lock
	$(PYTHON) -m venv $(EVIDENTLY_VENV)
	$(EVIDENTLY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(EVIDENTLY_VENV)/bin/python -m pip install --quiet -r requirements-evidently.lock
	touch $@

benchmark-drift: install $(EVIDENTLY_VENV)/.installed
	$(BIN)/python benchmarks/drift_vs_evidently.py --evidently-python $(EVIDENTLY_VENV)/bin/python

clean:
	rm -rf $(VENV) $(DVC_VENV) $(EVIDENTLY_VENV) .dagster data .pytest_cache .coverage
