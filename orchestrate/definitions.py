"""The Dagster code location: `dagster dev -m orchestrate.definitions` (repo root).

Dagster loads a module-level `defs`; it is built from meltano.yml in
MELTANO_PROJECT_ROOT (default: this repository). Run Dagster from .venv-dagster
(`make .venv-dagster/.installed`), with Meltano's environment in
MELTANO_ENVIRONMENT (default: meltano.yml's default_environment).
"""

from __future__ import annotations

import os
from pathlib import Path

from orchestrate.meltano_dagster import REPO, build_definitions

defs = build_definitions(Path(os.environ.get("MELTANO_PROJECT_ROOT", str(REPO))))
