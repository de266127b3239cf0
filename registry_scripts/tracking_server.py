"""An embedded MLflow tracking server: a real `mlflow server` subprocess on SQLite.

Used by `make run`, the test suite and the benchmarks, so all three run against the same kind
of registry: a SQLite backend store and artifacts served by the tracking server itself
(`--artifacts-destination`), both under one data folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import TracebackType

from registry_scripts.processes import ServerProcess, free_port


class TrackingServer:
    """Start, wait for and stop one `mlflow server` process."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        backend_store_uri: str | None = None,
        workers: int = 1,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port or free_port(host)
        self.backend_store_uri = backend_store_uri or f"sqlite:///{data_dir / 'mlflow.db'}"
        self.workers = workers
        self.log_path = log_path or data_dir / "mlflow-server.log"
        self.env = env
        self._server: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", self.backend_store_uri,
            "--artifacts-destination", str(self.data_dir / "artifacts"),
            "--host", self.host,
            "--port", str(self.port),
            "--workers", str(self.workers),
        ]  # fmt: skip

    def start(self, timeout: float = 120.0) -> TrackingServer:
        """Launch the server and return once `/health` answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(self.env or {})}
        self._server = ServerProcess(self.command(), env, self.port, "/health", self.log_path)
        self._server.start(timeout)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server and every process it started."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(timeout=timeout)

    def __enter__(self) -> TrackingServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
