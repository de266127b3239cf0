"""Real server processes for end-to-end tests: the API under uvicorn, `mlflow models serve`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from registry_scripts.tracking_server import free_port, wait_until_healthy

VENV_BIN = str(Path(sys.executable).parent)


class ServerProcess:
    """A command serving HTTP on a port, started in its own process group and stopped with it."""

    def __init__(
        self, command: list[str], env: dict[str, str], port: int, ready_path: str, log_path: Path
    ) -> None:
        self.command = command
        self.env = {**env, "PATH": f"{VENV_BIN}:{env.get('PATH', os.defpath)}"}
        self.port = port
        self.ready_path = ready_path
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> ServerProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_until_healthy(self.url + self.ready_path, timeout, self.process)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            os.killpg(process.pid, sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        return process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def api_process(env: dict[str, str], log_path: Path, **settings: str) -> ServerProcess:
    """`python -m server` on a free port, ready when /ping answers 200."""
    port = free_port()
    full_env = {**env, "API_HOST": "127.0.0.1", "API_PORT": str(port), **settings}
    return ServerProcess([sys.executable, "-m", "server"], full_env, port, "/ping", log_path)


def mlflow_scoring_process(env: dict[str, str], model_uri: str, log_path: Path) -> ServerProcess:
    """`mlflow models serve --env-manager local` on a free port, ready when /ping answers 200."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    return ServerProcess(command, env, port, "/ping", log_path)
