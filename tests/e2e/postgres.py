"""A throwaway PostgreSQL server for one test module: Debian's binaries, 127.0.0.1.

initdb/pg_ctl refuse to run as root, so as root the server runs as `nobody` in a
fresh directory under /tmp that belongs to it. SQL goes through `psql` over TCP.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.server import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

USER = "shop"
DATABASE = "shop"
# The sandbox environment's tap-postgres password (meltano.yml); a throwaway server.
PASSWORD = "SANDBOX-SHOP-PASSWORD"  # noqa: S105 - a test server's fixed password


def server_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin holding pg_ctl, if any."""
    found = [
        p.parent
        for p in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")
        if p.parent.parent.name.isdigit()
    ]
    return max(found, key=lambda b: int(b.parent.name)) if found else None


@dataclasses.dataclass
class Postgres:
    """A running server: where it listens and a way to run SQL."""

    bin_dir: Path
    port: int

    def sql(self, statement: str, database: str = DATABASE) -> str:
        """Run SQL through psql; returns its unaligned, tuples-only output."""
        result = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                USER,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-qAt",
                "-c",
                statement,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "PGTZ": "UTC",
                "PGPASSWORD": PASSWORD,
            },
        )
        if result.returncode != 0:
            msg = f"psql failed: {result.stderr.strip()}"
            raise RuntimeError(msg)
        return result.stdout

    def meltano_env(self) -> dict[str, str]:
        """The tap-postgres settings pointing at this server."""
        return {
            "TAP_POSTGRES_HOST": "127.0.0.1",
            "TAP_POSTGRES_PORT": str(self.port),
            "TAP_POSTGRES_USER": USER,
            "TAP_POSTGRES_DATABASE": DATABASE,
            "TAP_POSTGRES_PASSWORD": PASSWORD,
        }


def _as_server_user() -> dict[str, Any]:
    """Keywords for subprocess that drop root to `nobody` (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return {}
    return {"user": "nobody", "group": "nogroup", "extra_groups": []}


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    """Start a fresh server with database `shop`; stop it and remove its files."""
    bin_dir = server_bin()
    if bin_dir is None:
        msg = "no PostgreSQL server binaries (make postgres-server)"
        raise FileNotFoundError(msg)
    home = Path(tempfile.mkdtemp(prefix="e2e-postgres-", dir="/tmp"))
    drop = _as_server_user()
    if drop:
        shutil.chown(home, user="nobody", group="nogroup")
    data = home / "data"
    port = free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}

    def run(*args: str) -> None:
        result = subprocess.run(
            args, capture_output=True, text=True, check=False, env=env, **drop
        )
        if result.returncode != 0:
            msg = f"{Path(args[0]).name} failed: {result.stderr or result.stdout}"
            raise RuntimeError(msg)

    password_file = home / "password"
    password_file.write_text(PASSWORD + "\n")
    if drop:
        shutil.chown(password_file, user="nobody", group="nogroup")
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
    try:
        run(
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            USER,
            "--auth=scram-sha-256",
            f"--pwfile={password_file}",
            "-E",
            "UTF8",
            "--no-sync",
        )
        run(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(home / "server.log"),
            "-w",
            "start",
        )
        server = Postgres(bin_dir, port)
        try:
            server.sql(f"CREATE DATABASE {DATABASE}", database="postgres")
            yield server
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(home, ignore_errors=True)
