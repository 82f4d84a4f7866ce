# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
PKGS   := sandbox target-clevertap tap-clevertap target-salesforce
STAMP  := $(VENV)/.installed

.PHONY: install lint format typecheck pytest test demo bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Installs every package editable plus the pinned dev group from pyproject.toml.
$(STAMP): $(BIN)/python pyproject.toml $(foreach p,$(PKGS),$(p)/pyproject.toml)
	$(BIN)/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['dependency-groups']['dev']))" > $(VENV)/dev-requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(foreach p,$(PKGS),-e ./$(p)) -r $(VENV)/dev-requirements.txt
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

demo: install
	$(BIN)/python -m sandbox demo

bench: install
	$(BIN)/python bench/run.py

bench-quick: install
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .sandbox
