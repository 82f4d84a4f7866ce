# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
PKGS   := sandbox target-clevertap tap-clevertap target-salesforce
PYTEST_ARGS ?= -n 2
STAMP  := $(VENV)/.installed

.PHONY: install lint format typecheck pytest test demo bench bench-quick reliability-report clean apex-parser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Installs every package editable plus the pinned dev group from pyproject.toml.
$(STAMP): $(BIN)/python pyproject.toml $(foreach p,$(PKGS),$(p)/pyproject.toml)
	$(BIN)/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['dependency-groups']['dev']))" > $(VENV)/dev-requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(foreach p,$(PKGS),-e ./$(p)) -r $(VENV)/dev-requirements.txt
	touch $(STAMP)

# The singer-io tap-salesforce and Meltano each need a venv of their own: both conflict
# with singer-sdk's pins (see ../shared/docs/singer-meltano-notes.md, section 1).
TAP_SF_VENV  := .venv-tap-salesforce
MELTANO_VENV := .venv-meltano

$(TAP_SF_VENV)/.installed:
	$(PYTHON) -m venv $(TAP_SF_VENV)
	$(TAP_SF_VENV)/bin/python -m pip install --quiet --disable-pip-version-check tap-salesforce==2.8.1
	touch $@

$(MELTANO_VENV)/.installed:
	$(PYTHON) -m venv $(MELTANO_VENV)
	$(MELTANO_VENV)/bin/python -m pip install --quiet --disable-pip-version-check meltano==4.4.1
	touch $@

# Dagster, the orchestrator that runs meltano.yml's schedules (orchestrate/), in a venv
# of its own: its pins are not singer-sdk's or Meltano's.
DAGSTER_VENV := .venv-dagster

$(DAGSTER_VENV)/.installed: orchestrate/requirements.txt
	$(PYTHON) -m venv $(DAGSTER_VENV)
	env -u HTTPS_PROXY -u https_proxy -u REQUESTS_CA_BUNDLE $(DAGSTER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r orchestrate/requirements.txt
	touch $@

install: $(STAMP) $(TAP_SF_VENV)/.installed $(MELTANO_VENV)/.installed $(DAGSTER_VENV)/.installed

# PostgreSQL server binaries (Debian's `postgresql` package) for the tests that start
# a throwaway server of their own (sandbox/sandbox/postgres.py): target-clevertap's
# state store on PostgreSQL and tests/e2e/test_postgres_to_clevertap.py. Installed
# only when no initdb/pg_ctl is there.
.PHONY: postgres-server
postgres-server:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "installing PostgreSQL server binaries (apt-get install postgresql)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; \
	fi

# The Meltano project's plugin venvs, for the e2e tests. Never with the sandbox proxy
# variables set: pip and uv must reach the package index directly.
MELTANO_PLUGINS := .meltano/.plugins-installed
$(MELTANO_PLUGINS): meltano.yml $(MELTANO_VENV)/.installed $(foreach p,$(PKGS),$(p)/pyproject.toml)
	env -u HTTPS_PROXY -u https_proxy -u REQUESTS_CA_BUNDLE MELTANO_SEND_ANONYMOUS_USAGE_STATS=false $(MELTANO_VENV)/bin/meltano install
	touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(BIN)/mypy

# The Apex parser the salesforce-org/ checks use (tests/salesforce_org): pinned, from
# the npm registry, installed into a local folder (gitignored); pure JS, needs node.
APEX_PARSER_VERSION := 5.2.0
NPM_TOOLS  := .tools/npm
APEX_PARSER := $(NPM_TOOLS)/node_modules/@apexdevtools/apex-parser/package.json
$(APEX_PARSER): Makefile
	mkdir -p $(NPM_TOOLS)
	npm install --prefix $(NPM_TOOLS) --no-save --no-audit --no-fund --ignore-scripts @apexdevtools/apex-parser@$(APEX_PARSER_VERSION)
	touch $@

apex-parser: $(APEX_PARSER)

pytest: install $(MELTANO_PLUGINS) $(APEX_PARSER) postgres-server
	APEX_PARSER_REQUIRED=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# Runs the reliability suite and rewrites docs/reliability.md from its cells (make test
# runs the same suite but leaves the report as it is).
reliability-report: install $(MELTANO_PLUGINS) postgres-server
	WRITE_RELIABILITY_REPORT=1 $(BIN)/python -m pytest tests/reliability $(PYTEST_ARGS)

demo: install
	$(BIN)/python -m sandbox demo

bench: $(STAMP)
	$(BIN)/python bench/run.py

bench-quick: $(STAMP)
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) $(TAP_SF_VENV) $(MELTANO_VENV) $(DAGSTER_VENV) .mypy_cache .ruff_cache .sandbox .tools
