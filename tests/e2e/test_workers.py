"""WORKERS > 1: a listening socket per worker (REUSE_PORT), also for a worker that replaces a dead one,
whose metrics leave with it.

Which sockets a process listens on is read from /proc (a socket's inode names it), so the tests
tell "each worker its own socket" from "all workers one socket" directly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
import skops.io as sio

from registry_scripts.dataset import load_frame
from registry_scripts.estimators import build_estimator
from registry_scripts.processes import ServerProcess, api_process
from server.process import worker_sockets
from tests.helpers import wait_for
from tests.server.metrics_text import model_info_pids

pytestmark = pytest.mark.skipif(not worker_sockets.AVAILABLE, reason="SO_REUSEPORT balancing is Linux's")

ROW = {k: float(v) for k, v in load_frame()[0].iloc[0].items()}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    features, target, _ = load_frame()
    path = tmp_path_factory.mktemp("workers") / "model.skops"
    sio.dump(build_estimator("logistic_regression", 0).fit(features.to_numpy(), target.to_numpy()), path)
    return path


def _serving_file(
    env: dict[str, str], model_file: Path, log: Path, workers: int, **settings: str
) -> ServerProcess:
    """`python -m server` with `workers` workers on the model file (no registry in the loop)."""
    return api_process(env, log, MODEL_URI="", MODEL_PATH=str(model_file), WORKERS=str(workers), **settings)


def _listening(pid: int, port: int) -> set[str]:
    """The inodes of the sockets `pid` listens on at `port`."""
    process = psutil.Process(pid)
    return {
        os.readlink(f"/proc/{pid}/fd/{c.fd}")
        for c in process.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def _sockets_by_process(server: ServerProcess) -> dict[int, set[str]]:
    """Listening sockets of the supervisor and each worker, by pid."""
    assert server.process is not None
    parent = psutil.Process(server.process.pid)
    sockets = {}
    for pid in [parent.pid, *(child.pid for child in parent.children())]:
        try:
            sockets[pid] = _listening(pid, server.port)
        except (psutil.Error, FileNotFoundError):  # a worker dying or being reaped just now
            continue
    return sockets


def _settled(server: ServerProcess, workers: int) -> dict[int, set[str]]:
    """Wait until every worker listens and the supervisor holds no listening socket; the workers'
    sockets (the supervisor's other child, multiprocessing's resource tracker, listens on none)."""
    assert server.process is not None
    supervisor = server.process.pid
    state: dict[int, set[str]] = {}

    def ready() -> bool:
        state.clear()
        state.update(_sockets_by_process(server))
        listening = [pid for pid, inodes in state.items() if inodes and pid != supervisor]
        return len(listening) == workers and not state[supervisor]

    wait_for(ready, 90, f"{workers} workers listening, the supervisor not")
    return {pid: inodes for pid, inodes in state.items() if inodes and pid != supervisor}


def _served_by(server: ServerProcess, requests: int) -> set[str]:
    """The workers (request-id prefixes) that answered `requests` requests, each on a new connection."""
    prefixes = set()
    for _ in range(requests):
        response = httpx.post(f"{server.url}/predict", json=ROW)
        assert response.status_code == 200
        prefixes.add(response.headers["x-request-id"][:16])
    return prefixes


def test_each_worker_listens_on_a_socket_of_its_own(
    base_env: dict[str, str], model_file: Path, tmp_path: Path
) -> None:
    with _serving_file(base_env, model_file, tmp_path / "w.log", 3) as server:
        sockets = _settled(server, 3)
        assert all(len(inodes) == 1 for inodes in sockets.values())
        assert len(set.union(*sockets.values())) == 3
        assert len(_served_by(server, 60)) == 3


def test_reuse_port_off_shares_one_socket(base_env: dict[str, str], model_file: Path, tmp_path: Path) -> None:
    with _serving_file(base_env, model_file, tmp_path / "s.log", 2, REUSE_PORT="false") as server:
        wait_for(lambda: sum(bool(s) for s in _sockets_by_process(server).values()) == 3, 90, "all listening")
        sockets = _sockets_by_process(server)
        assert len(set.union(*sockets.values())) == 1


def test_a_worker_that_replaces_a_dead_one_gets_a_socket_of_its_own(
    base_env: dict[str, str], model_file: Path, tmp_path: Path
) -> None:
    with _serving_file(base_env, model_file, tmp_path / "r.log", 2) as server:
        before = _settled(server, 2)
        victim = next(iter(before))
        os.kill(victim, signal.SIGKILL)

        wait_for(lambda: victim not in _sockets_by_process(server), 30, "the dead worker replaced")
        after = _settled(server, 2)

        assert victim not in after
        assert len(set.union(*after.values())) == 2
        assert before[victim] not in after.values()
        assert len(_served_by(server, 40)) == 2
        # The dead worker's metrics went with it: model_info names the live workers only.
        live = {str(pid) for pid in after}
        wait_for(lambda: model_info_pids(httpx.get(f"{server.url}/metrics").text) == live, 30, "live workers")


def test_a_second_server_on_a_served_port_exits_with_one_line(
    base_env: dict[str, str], model_file: Path, tmp_path: Path
) -> None:
    with _serving_file(base_env, model_file, tmp_path / "first.log", 2) as first:
        env = {**base_env, "MODEL_URI": "", "MODEL_PATH": str(model_file), "WORKERS": "2",
               "API_HOST": "127.0.0.1", "API_PORT": str(first.port)}  # fmt: skip
        second = subprocess.run(
            [sys.executable, "-m", "server"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert second.returncode == 1
        assert second.stderr.strip().splitlines()[-1] == (
            f"error: cannot listen on 127.0.0.1:{first.port}: Address already in use"
        )
        assert httpx.post(f"{first.url}/predict", json=ROW).status_code == 200
