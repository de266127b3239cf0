"""`make run`'s stack: tracking server, default model when the registry is empty, API; Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from registry_scripts.processes import free_port, port_is_free, wait_until_healthy


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "registry_scripts.local_stack"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_stack_registers_serves_and_stops_on_ctrl_c(base_env: dict[str, str], tmp_path: Path) -> None:
    mlflow_port, api_port = free_port(), free_port()
    env = {
        **{k: v for k, v in base_env.items() if k != "MLFLOW_TRACKING_URI"},
        "LOCAL_MLFLOW_PORT": str(mlflow_port),
        "LOCAL_DATA_DIR": str(tmp_path / "data"),
        "API_HOST": "127.0.0.1",
        "API_PORT": str(api_port),
    }
    for run in (1, 2):  # the second run finds @champion and trains nothing
        stack = _start(env, tmp_path / "stack.log")
        try:
            wait_until_healthy(f"http://127.0.0.1:{api_port}/ping", 180, stack)
            assert httpx.get(f"http://127.0.0.1:{api_port}/health").json()["model_version"] == "1"
        finally:
            os.killpg(stack.pid, signal.SIGINT)
            assert stack.wait(timeout=60) == 0, (tmp_path / "stack.log").read_text()[-3000:]
        assert port_is_free("127.0.0.1", mlflow_port), f"run {run} left MLflow running"
        assert port_is_free("127.0.0.1", api_port), f"run {run} left the API running"
    assert (tmp_path / "data" / "mlflow.db").is_file()


def test_stack_refuses_a_taken_port(base_env: dict[str, str], tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**base_env, "LOCAL_MLFLOW_PORT": str(port), "LOCAL_DATA_DIR": str(tmp_path)}
        result = subprocess.run(
            [sys.executable, "-m", "registry_scripts.local_stack"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: port {port} is taken")
