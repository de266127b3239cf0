"""Shutdown and restarts: SIGTERM stops accepting and finishes what is in flight; a rolling restart
loses nothing.

No timing window decides these tests. The requests in flight at the signal are held there by
their clients (headers and half a body sent, the rest only seconds after the signal), and the server's own
count of requests in progress (`prediction_requests_in_flight`) says when they have all arrived;
a backend leaves the balancer once its last forwarded request is answered.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import time
from pathlib import Path

import httpx

from registry_scripts.processes import ServerProcess, api_process
from tests.e2e.load import BackgroundLoad
from tests.e2e.round_robin import RoundRobin
from tests.helpers import half_sent, wait_for
from tests.registry import FEATURES
from tests.server.metrics_text import sample

ROW = {k: float(v) for k, v in FEATURES.iloc[0].items()}
BODY = json.dumps(ROW).encode()
HELD = 8
# How long the clients keep their requests unfinished after the server stopped accepting: well
# inside the 30 s graceful period, and far longer than a server that cut them short would wait.
HOLD_SECONDS = 3


def _finish(sock: socket.socket) -> tuple[int, dict]:
    """Send the rest of the body; the answer's status and JSON."""
    with sock:
        sock.sendall(BODY[len(BODY) // 2 :])
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())


def _in_flight(server: ServerProcess) -> float:
    return sample(httpx.get(f"{server.url}/metrics").text, "prediction_requests_in_flight")


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_stops_accepting_and_finishes_every_request_in_flight(
    base_env: dict[str, str], champion_uri: str, tmp_path: Path
) -> None:
    server = api_process(base_env, tmp_path / "api.log", MODEL_URI=champion_uri).start()
    assert server.process is not None
    try:
        held = [half_sent(server.port, BODY) for _ in range(HELD)]
        wait_for(lambda: _in_flight(server) == HELD, 30, f"{HELD} requests in flight")
        os.killpg(server.process.pid, signal.SIGTERM)
        # Not one of them can finish before its client sends the rest: the server, told to stop,
        # closes its listening socket while they wait.
        wait_for(lambda: _refuses_connections(server.port), 30, "new connections refused")
        time.sleep(HOLD_SECONDS)
        assert server.process.poll() is None
        answers = [_finish(sock) for sock in held]
        code = server.process.wait(60)
    finally:
        server.stop()
    assert [status for status, _ in answers] == [200] * HELD
    assert {body["label"] for _, body in answers} == {"malignant"}
    assert code in (0, -signal.SIGTERM)
    assert "Finished server process" in server.log()
    assert "Traceback" not in server.log()


def test_a_rolling_restart_behind_a_balancer_loses_no_request(
    base_env: dict[str, str], champion_uri: str, tmp_path: Path
) -> None:
    backends = [
        api_process(base_env, tmp_path / f"api-{i}.log", MODEL_URI=champion_uri).start() for i in range(2)
    ]
    try:
        with RoundRobin() as balancer:
            for backend in backends:
                balancer.add(backend.url)
            with BackgroundLoad(balancer.url, ROW, threads=6, limit=600) as load:
                for backend in backends:
                    wait_for(lambda b=backend: balancer.served(b.url) >= 20, 60, "both backends serving")
                for position in range(2):
                    old = backends[position]
                    balancer.remove(old.url)  # out of rotation first (preStop + readiness)
                    wait_for(lambda o=old: balancer.outstanding(o.url) == 0, 60, "old backend drained")
                    assert old.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
                    new = api_process(
                        base_env, tmp_path / f"api-new-{position}.log", MODEL_URI=champion_uri
                    ).start()
                    backends[position] = new
                    balancer.add(new.url)
                    wait_for(lambda n=new: balancer.served(n.url) >= 20, 60, "the new backend serving")
            forwarded = dict(balancer.forwarded)
    finally:
        for backend in backends:
            backend.stop()
    assert load.errors == []
    assert set(load.statuses) == {200}
    assert len(forwarded) == 4  # every generation of both backends served traffic
    assert sum(forwarded.values()) == load.total
