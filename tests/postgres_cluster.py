"""A private PostgreSQL cluster for a test module: one the test can really stop and start again.

The shared server on 127.0.0.1:5432 serves other tests and services and must never go down, so a
test about a database outage gets a cluster of its own: `initdb` into a temporary folder (trust
authentication, durability off: nothing here outlives the test), a server on a free loopback port
and no Unix socket, and `pg_ctl` to stop and start it. PostgreSQL refuses to run as root, so when
the tests run as root the cluster belongs to the `postgres` OS user and its commands run through
`runuser`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

import psycopg

from registry_scripts.processes import free_port

OS_USER = "postgres"  # the cluster's owner when the tests run as root
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",  # loopback TCP only: no socket path to collide or grow too long
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "50",
}


def server_binaries() -> Path | None:
    """The folder of `initdb` and `pg_ctl`: $PG_BIN, else the newest Debian-style
    /usr/lib/postgresql/N/bin, else wherever `pg_ctl` is on PATH; None when there is none."""
    candidates = [os.environ.get("PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for folder in candidates:
        if folder and (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


def _major(folder: str) -> int:
    version = Path(folder).parent.name
    return int(version) if version.isdigit() else 0


class PostgresCluster:
    """A throwaway cluster: `init()` once, then `start()`/`stop()` as often as the test likes,
    `destroy()` (or leaving the `with` block) to stop it and remove every file."""

    def __init__(self, binaries: Path, user: str = "postgres") -> None:
        self.binaries = binaries
        self.user = user  # the database superuser
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        self.root = Path(tempfile.mkdtemp(prefix="rs-postgres-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam(OS_USER)
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as_owner = ["runuser", "-u", OS_USER, "--"]

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        command = [*self._as_owner, str(self.binaries / tool), *args]
        result = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
                f"\n--- server log ---\n{self.log()}"
            )

    def init(self) -> PostgresCluster:
        """Create the cluster's files (trust authentication for everyone, on loopback only)."""
        self._run(
            "initdb",
            "--pgdata",
            str(self.data),
            "--username",
            self.user,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\nport = {self.port}\n")
            conf.writelines(f"{name} = {value}\n" for name, value in SETTINGS.items())
        return self

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        self._run(
            "pg_ctl", "start", "--pgdata", str(self.data), "--log", str(self.log_path), "-w", "-t", "60"
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: open connections are cut, as a crashed or restarted database
        would cut them) and return once it is down."""
        self._run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", mode, "-w", "-t", "60")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str) -> str:
        """`postgresql://` as an operator would write it (the server adds the psycopg driver)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def sqlalchemy_url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; its name."""
        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return name

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return "(no server log)"

    def destroy(self) -> None:
        """Stop the server at once (if it runs) and remove every file of the cluster."""
        if self.running:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        try:
            self.init().start()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.destroy()
