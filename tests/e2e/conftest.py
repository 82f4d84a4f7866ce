"""An isolated copy of the Meltano project on its own sandbox, for the e2e runs.

The copy lives in a temporary directory: meltano.yml (with the sandbox proxy on a
free port), symlinks to the plugin folders and transforms/, and the plugin venvs
that `meltano install` made in the repository (symlinked, so nothing is installed
and nothing leaves 127.0.0.1). State, rejects, catalogs and the emulators' data stay
in the temporary directory.
"""

from __future__ import annotations

import dataclasses
import io
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from sandbox.control import DEFAULT_PORTS, Sandbox
from sandbox.demo import meltano_env
from sandbox.server import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[2]
MELTANO = REPO / ".venv-meltano" / "bin" / "meltano"
LINKED = ("tap-clevertap", "target-clevertap", "target-salesforce", "transforms")
PLUGIN_DIRS = (
    Path("extractors") / "tap-salesforce",
    Path("extractors") / "tap-clevertap",
    Path("loaders") / "target-clevertap",
    Path("loaders") / "target-salesforce",
)


@dataclasses.dataclass
class MeltanoProject:
    """The copy: where it is, its sandbox, and a way to run Meltano in it."""

    root: Path
    sandbox: Sandbox

    def run(
        self, *args: str, timeout: float = 600, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `meltano --environment=sandbox ARGS` in the copy (ENV added)."""
        env = {**meltano_env(), **(env or {})}
        env["MELTANO_AUTO_INSTALL"] = "false"
        started = time.monotonic()
        result = subprocess.run(
            [str(MELTANO), "--environment=sandbox", *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        log = self.root / "meltano-runs.log"
        with log.open("a") as handle:
            handle.write(
                f"--- meltano {' '.join(args)}: rc={result.returncode} "
                f"{time.monotonic() - started:.1f}s\n{result.stdout}{result.stderr}\n"
            )
        return result


def _installed_plugins() -> list[Path]:
    """Every plugin venv `meltano install` made (PLUGIN_DIRS and the others)."""
    found = {
        p.parent.relative_to(REPO / ".meltano")
        for p in (REPO / ".meltano").glob("*/*/venv")
    }
    return sorted(found | set(PLUGIN_DIRS))


def _project_yaml(ports: dict[str, int]) -> dict[str, Any]:
    project = yaml.safe_load((REPO / "meltano.yml").read_text())
    for environment in project["environments"]:
        if environment["name"] == "sandbox":
            environment["env"]["HTTPS_PROXY"] = f"http://127.0.0.1:{ports['proxy']}"
    return dict(project)


@pytest.fixture(scope="module")
def meltano_project(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[MeltanoProject]:
    """The project copy with its sandbox up; stopped at the end of the module."""
    if not MELTANO.exists():
        pytest.skip(
            "Meltano is not installed: python3.11 -m venv .venv-meltano && "
            ".venv-meltano/bin/pip install meltano==4.4.1"
        )
    missing = [
        str(p) for p in PLUGIN_DIRS if not (REPO / ".meltano" / p / "venv").exists()
    ]
    if missing:
        pytest.skip(
            f"plugins not installed ({', '.join(missing)}): run meltano install"
        )
    root = tmp_path_factory.mktemp("meltano-project")
    for name in LINKED:
        (root / name).symlink_to(REPO / name, target_is_directory=True)
    for plugin in _installed_plugins():
        venv = root / ".meltano" / plugin / "venv"
        venv.parent.mkdir(parents=True)
        venv.symlink_to(REPO / ".meltano" / plugin / "venv", target_is_directory=True)
    ports = {name: free_port() for name in DEFAULT_PORTS}
    (root / "meltano.yml").write_text(
        yaml.safe_dump(_project_yaml(ports), sort_keys=False)
    )
    out = io.StringIO()
    sandbox = Sandbox(root, ports, out=out)
    if sandbox.up() != 0:
        sandbox.down()
        pytest.fail(f"sandbox did not start:\n{out.getvalue()}")
    try:
        yield MeltanoProject(root, sandbox)
    finally:
        sandbox.down()
