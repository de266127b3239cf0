"""Local server processes, started and stopped as a whole: for `make run`, the tests and `make bench`.

Each server runs in its own process group, so stopping it also stops whatever it spawned (the
uvicorn workers and job consumers of `mlflow server`, the workers of `python -m server` and
`mlflow models serve`), even when the server itself has already died and left them behind.
A process that leaves its group (a new session) is out of reach of that; `stop_marked` finds such
processes by a variable their environment inherited (on Linux, through /proc).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

VENV_BIN = str(Path(sys.executable).parent)
PROC = Path("/proc")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on `port` now (connections lingering in TIME_WAIT don't count,
    as servers bind with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_until_healthy(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll `url` until it answers 200; fail early if `process` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with code {process.returncode} before {url} was healthy")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} was not healthy within {timeout:.0f} s")


def _group_members(pgid: int) -> list[int]:
    """The living (not zombie) processes of group `pgid`: read from /proc where there is one."""
    if not PROC.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                # After the command's closing parenthesis: state, ppid, pgrp, ...
                fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                members.append(int(entry.name))
    return members


def _wait_gone(pids: Callable[[], list[int]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pids():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def stop_group(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    """Stop `process`, the leader of its own process group, and every member of the group.

    Sends `sig` to the group (also when the leader has already exited, since what it spawned may
    live on), waits up to `timeout` for the leader and then for the rest, and kills what remains.
    Returns the leader's exit status.
    """
    deadline = time.monotonic() + timeout
    _signal_group(process.pid, sig)
    try:
        process.wait(max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()
    if not _wait_gone(lambda: _group_members(process.pid), max(deadline - time.monotonic(), 0)):
        _signal_group(process.pid, signal.SIGKILL)
        _wait_gone(lambda: _group_members(process.pid), 5)
    return process.returncode


def marked_processes(variable: str, value: str) -> list[int]:
    """Processes whose environment has `variable=value` (Linux; elsewhere none are found).

    /proc shows the environment a process started with, which its children inherit unless they
    are given another one: a marker that reaches processes outside any known process group.
    """
    if not PROC.is_dir():
        return []
    needle = f"{variable}={value}".encode()
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                environ = (entry / "environ").read_bytes()
                state = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
            except OSError:  # gone, or not ours to read
                continue
            if needle in environ.split(b"\0") and state not in (b"Z", b"X"):
                found.append(int(entry.name))
    return found


def stop_marked(variable: str, value: str, timeout: float = 10) -> list[int]:
    """SIGTERM every process `marked_processes` finds, SIGKILL those alive after `timeout`.

    Returns the pids it found, so a caller can tell that something had escaped.
    """
    found = marked_processes(variable, value)
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    if found and not _wait_gone(lambda: marked_processes(variable, value), timeout):
        for pid in marked_processes(variable, value):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(lambda: marked_processes(variable, value), 5)
    return found


class ServerProcess:
    """A command serving HTTP on `port`, ready when `ready_path` answers 200."""

    def __init__(
        self, command: list[str], env: dict[str, str], port: int, ready_path: str, log_path: Path
    ) -> None:
        self.command = command
        # The venv's bin first: `mlflow models serve` execs `uvicorn` by name.
        self.env = {**env, "PATH": f"{VENV_BIN}:{env.get('PATH', os.defpath)}"}
        self.port = port
        self.ready_path = ready_path
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> ServerProcess:
        """Launch, and return once ready; `ready_seconds` is the time from launch to ready."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_until_healthy(self.url + self.ready_path, timeout, self.process)
        except Exception:
            self.stop()
            raise
        self.ready_seconds = time.perf_counter() - started
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        """Signal the whole process group; kill it if it outlives `timeout`. Returns the exit status."""
        process, self.process = self.process, None
        if process is None:
            return None
        return stop_group(process, sig, timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def api_process(env: dict[str, str], log_path: Path, **settings: str) -> ServerProcess:
    """This server (`python -m server`) on a free port, ready when /ping answers 200."""
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


# MLServer with its MLflow runtime, in a venv of its own (`make mlserver`): the Open Inference
# Protocol peer of the differential test and `make bench`.
MLSERVER_VENV = Path(__file__).resolve().parent.parent / ".mlserver"


def mlserver_process(
    env: dict[str, str], model_dir: Path, name: str, folder: Path, log_path: Path
) -> tuple[ServerProcess, int]:
    """`mlserver start` serving the MLflow model directory `model_dir` as `name`, one worker, on
    free HTTP and gRPC ports; returns the process (ready when /v2/health/ready answers 200) and
    its gRPC port. Its PYTHONPATH reaches this repository's `model_wrapper`, which our pyfunc
    models load, and nothing else of it."""
    import json

    python = MLSERVER_VENV / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"MLServer is not installed in {MLSERVER_VENV}: run `make mlserver`")
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(
        json.dumps(
            {
                "http_port": http_port,
                "grpc_port": grpc_port,
                "metrics_port": metrics_port,
                "host": "127.0.0.1",
                "parallel_workers": 0,
                "debug": False,
            }
        )
    )
    (folder / "model-settings.json").write_text(
        json.dumps(
            {
                "name": name,
                "implementation": "mlserver_mlflow.MLflowRuntime",
                "parameters": {"uri": str(model_dir)},
            }
        )
    )
    repository = str(Path(__file__).resolve().parent.parent)
    mlserver_env = {
        **{k: v for k, v in env.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
        "PYTHONPATH": repository,
        "PATH": f"{python.parent}:{env.get('PATH', '')}",
    }
    command = [str(python.parent / "mlserver"), "start", str(folder)]
    return ServerProcess(command, mlserver_env, http_port, "/v2/health/ready", log_path), grpc_port
