# The README's commands. Each one installs what it needs (the .venv) and, when no
# AIRFLOW_CONN_CUSTOMER_DB is configured, starts the embedded PostgreSQL under .state/.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
CLI    := $(PY) -m customer_import.local.cli
UV_VERSION := 0.13.9

export PYTHONPATH := $(CURDIR)/include$(if $(PYTHONPATH),:$(PYTHONPATH))
export AIRFLOW_HOME ?= $(CURDIR)/.state/airflow
export AIRFLOW__CORE__DAGS_FOLDER ?= $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER ?= $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False
export CUSTOMER_IMPORT_DATA_DIR ?= $(CURDIR)/.state/data
export GX_ANALYTICS_ENABLED ?= False

FILE ?=
SOURCE ?=
MODE ?=
ON_ERROR ?=
MAX_ERROR_RATE ?=
ROWS ?= 1000000
FLAT_ROWS ?= 5000000
REPEAT ?= 2
FIXED_ONLY ?=
DRY_RUN ?=
FORCE ?=
ENCODING ?=

.PHONY: help install demo import template expectations db-url airflow celery rollback forget bench test test-fast lint clean

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install: $(VENV)/.installed  ## create .venv with the pinned requirements

# uv (pinned, from PyPI) installs the packages in seconds where pip takes minutes; pip is the fallback.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	@echo "Installing Python packages into $(VENV) and compiling them (first run, about a minute)..."
	@$(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION) \
		&& $(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -r requirements-dev.txt \
		|| $(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

demo: install  ## import the bundled sample file through the DAG and print where to look
	@$(CLI) demo

import: install  ## import FILE=path.csv through the DAG [SOURCE= MODE= ON_ERROR= MAX_ERROR_RATE= DRY_RUN=1 FORCE=1 ENCODING= SNAPSHOT=full MAX_DEACTIVATE_SHARE= ALLOW_MASS_DEACTIVATION=1]
	@test -n "$(FILE)" || { echo "usage: make import FILE=path/to/customers.csv [SOURCE=name]"; exit 2; }
	@$(CLI) import "$(FILE)" $(if $(SOURCE),--source "$(SOURCE)") $(if $(MODE),--mode "$(MODE)") \
		$(if $(ON_ERROR),--on-error "$(ON_ERROR)") $(if $(MAX_ERROR_RATE),--max-error-rate "$(MAX_ERROR_RATE)") \
		$(if $(ENCODING),--encoding "$(ENCODING)") $(if $(DRY_RUN),--dry-run) $(if $(FORCE),--force) \
		$(if $(SNAPSHOT),--snapshot "$(SNAPSHOT)") $(if $(MAX_DEACTIVATE_SHARE),--max-deactivate-share "$(MAX_DEACTIVATE_SHARE)") \
		$(if $(ALLOW_MASS_DEACTIVATION),--allow-mass-deactivation)

template: install  ## write the CSV template (customers_template.csv) and its field guide (customers_field_guide.csv)
	@$(CLI) template customers_template.csv

expectations: install  ## regenerate from the contract: the GX suite and the SQL under expectations/, README's settings table
	@$(CLI) expectations

db-url: install  ## print the libpq URI of the database in use
	@$(CLI) db-url

airflow: install  ## run Airflow locally (UI on port AIRFLOW_PORT, default 8080; user admin)
	@$(CLI) airflow

celery: install  ## Airflow on the CeleryExecutor: two workers on Redis (CELERY_BROKER_URL), the FAB auth manager; prints which worker ran which task
	@$(CLI) celery

forget: install  ## erase one customer everywhere the imports kept it: make forget KEY=<AccountReferenceID>
	@test -n "$(KEY)" || { echo "usage: make forget KEY=<AccountReferenceID>"; exit 2; }
	@$(CLI) forget "$(KEY)"

rollback: install  ## roll back one import run: make rollback RUN_ID=<import run id>
	@test -n "$(RUN_ID)" || { echo "usage: make rollback RUN_ID=<import run id>"; exit 2; }
	@$(CLI) rollback "$(RUN_ID)"

bench: install  ## the benchmark against the psql \copy + MERGE floor, then the fixed costs [ROWS=1000000] [FLAT_ROWS=5000000] [REPEAT=2] [SERVERS="url1 url2"] [FIXED_ONLY=1] [GRID_ONLY=1]
	@$(PY) -m customer_import.local.bench --rows $(ROWS) --flat-rows $(FLAT_ROWS) --repeat $(REPEAT) \
		$(foreach url,$(SERVERS),--server "$(url)") $(if $(FIXED_ONLY),--fixed-only) $(if $(GRID_ONLY),--grid-only)

test: install  ## the whole test suite (what CI runs): two workers, a test file each; then, one at a time, the Celery clusters and the serial tests
	$(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder -m "not serial and not celery" --durations=12
	$(PY) -m pytest -m "celery or serial" --durations=8

test-fast: install  ## the unit tests only (seconds: no database, no Airflow run, no browser)
	$(PY) -m pytest -m unit -q

lint: install  ## ruff check, ruff format --check, mypy (strict on the core package), import-linter (the core's layers)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

clean:  ## stop the embedded PostgreSQL and remove .state/ (keeps .venv)
	-@test -x $(PY) && $(CLI) stop-db
	rm -rf .state
