"""A throwaway PostgreSQL server for tests: Debian's server binaries, 127.0.0.1.

`running_postgres()` makes a fresh cluster in a temporary directory, starts it on a
free port of 127.0.0.1 (TCP only, password authentication), yields where it
listens, and stops and removes it afterwards. initdb and pg_ctl refuse to run as
root, so as root the server runs as `nobody` in a directory that belongs to it.
The binaries come from the `postgresql` Debian package (`make postgres-server`).
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
from urllib.parse import quote

from sandbox.server import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

DEFAULT_USER = "tester"
DEFAULT_DATABASE = "tests"
# a throwaway server's fixed password, for tests only
DEFAULT_PASSWORD = "PG-TEST-PASSWORD-5e1d"  # noqa: S105 - a test server's password


def server_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin holding initdb and pg_ctl."""
    found = [
        p.parent
        for p in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")
        if p.parent.parent.name.isdigit() and (p.parent / "initdb").exists()
    ]
    return max(found, key=lambda b: int(b.parent.name)) if found else None


@dataclasses.dataclass(frozen=True)
class Postgres:
    """A running server: where it listens and who may log in."""

    bin_dir: Path
    port: int
    user: str
    password: str
    database: str

    def url(self, database: str | None = None) -> str:
        """A `postgresql://` URL (password included) for a database."""
        return (
            f"postgresql://{quote(self.user)}:{quote(self.password)}@127.0.0.1:"
            f"{self.port}/{database or self.database}"
        )

    def psql(self, statement: str, database: str | None = None) -> str:
        """Run SQL through psql; its unaligned, tuples-only output."""
        result = subprocess.run(  # noqa: S603 - fixed binary, test-owned server
            [
                str(self.bin_dir / "psql"),
                *("-h", "127.0.0.1", "-p", str(self.port), "-U", self.user),
                *("-d", database or self.database, "-v", "ON_ERROR_STOP=1"),
                *("-qAt", "-c", statement),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "PGPASSWORD": self.password,
                "PGTZ": "UTC",
            },
        )
        if result.returncode != 0:
            msg = f"psql failed: {result.stderr.strip()}"
            raise RuntimeError(msg)
        return result.stdout


def _as_server_user() -> dict[str, Any]:
    """Keywords for subprocess that drop root to `nobody` (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return {}
    return {"user": "nobody", "group": "nogroup", "extra_groups": []}


@contextlib.contextmanager
def running_postgres(
    *,
    user: str = DEFAULT_USER,
    password: str = DEFAULT_PASSWORD,
    database: str = DEFAULT_DATABASE,
) -> Iterator[Postgres]:
    """Start a fresh server holding `database`; stop it and remove its files.

    Raises:
        FileNotFoundError: when the server binaries are not installed.
        RuntimeError: when initdb, pg_ctl or psql fail.
    """
    bin_dir = server_bin()
    if bin_dir is None:
        msg = (
            "no PostgreSQL server binaries under /usr/lib/postgresql "
            "(run `make postgres-server`)"
        )
        raise FileNotFoundError(msg)
    home = Path(tempfile.mkdtemp(prefix="test-postgres-"))
    drop = _as_server_user()
    if drop:
        home.chmod(0o755)  # nobody must reach its directory inside
        shutil.chown(home, user="nobody", group="nogroup")
    data = home / "data"
    port = free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}

    def run(*args: str) -> None:
        result = subprocess.run(  # noqa: S603 - the server's own binaries
            args,
            capture_output=True,
            text=True,
            check=False,
            env=env,
            cwd=home,
            timeout=120,
            **drop,
        )
        if result.returncode != 0:
            msg = f"{Path(args[0]).name} failed: {result.stderr or result.stdout}"
            raise RuntimeError(msg)

    password_file = home / "password"
    password_file.write_text(password + "\n", encoding="utf-8")
    if drop:
        shutil.chown(password_file, user="nobody", group="nogroup")
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
        "-c fsync=off -c max_connections=40"
    )
    try:
        run(
            str(bin_dir / "initdb"),
            *("-D", str(data), "-U", user, "--auth=scram-sha-256"),
            *(f"--pwfile={password_file}", "-E", "UTF8", "--no-sync"),
        )
        run(
            str(bin_dir / "pg_ctl"),
            *("-D", str(data), "-o", options, "-l", str(home / "server.log")),
            *("-w", "start"),
        )
        server = Postgres(bin_dir, port, user, password, database)
        try:
            server.psql(f'CREATE DATABASE "{database}"', database="postgres")
            yield server
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
    finally:
        shutil.rmtree(home, ignore_errors=True)
