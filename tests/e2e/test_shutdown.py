"""Shutdown and restarts: SIGTERM finishes what is in flight; a rolling restart loses nothing."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from registry_scripts.processes import api_process
from tests.e2e.load import BackgroundLoad
from tests.e2e.round_robin import RoundRobin
from tests.registry import FEATURES

ROW = {k: float(v) for k, v in FEATURES.iloc[0].items()}
# 1000 rows of CSV go through MLflow's own parser: tens of milliseconds each, so 32 of them keep
# the server busy for a second or more.
CSV = FEATURES.sample(n=1000, replace=True, random_state=0).to_csv(index=False).encode()


def test_sigterm_lets_every_accepted_request_finish(
    base_env: dict[str, str], champion_uri: str, tmp_path: Path
) -> None:
    server = api_process(base_env, tmp_path / "api.log", MODEL_URI=champion_uri).start()
    started = threading.Barrier(33)

    def ask(_: int) -> tuple[int, float]:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            client.get("/health")  # connection open before the signal
            started.wait()
            response = client.post("/invocations", content=CSV, headers={"content-type": "text/csv"})
            return response.status_code, time.monotonic()

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = [pool.submit(ask, i) for i in range(32)]
        started.wait()
        time.sleep(0.3)  # every request sent and accepted; most still being answered
        began = time.monotonic()
        code = server.stop(signal.SIGTERM, timeout=45)
        stopped = time.monotonic() - began
        results = [answer.result() for answer in answers]
    assert [status for status, _ in results] == [200] * 32
    assert any(answered > began for _, answered in results)  # some were still in flight at the signal
    assert code in (0, -signal.SIGTERM)
    assert stopped < 30  # well inside the grace period
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
            with BackgroundLoad(balancer.url, ROW, threads=6, limit=120) as load:
                time.sleep(1)
                for position in range(2):
                    old = backends[position]
                    balancer.remove(old.url)  # out of rotation first (preStop + readiness)
                    time.sleep(0.3)
                    assert old.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
                    new = api_process(
                        base_env, tmp_path / f"api-new-{position}.log", MODEL_URI=champion_uri
                    ).start()
                    backends[position] = new
                    balancer.add(new.url)
                    time.sleep(1)
            forwarded = dict(balancer.forwarded)
    finally:
        for backend in backends:
            backend.stop()
    assert load.errors == []
    assert set(load.statuses) == {200}
    assert load.total > 200
    assert len(forwarded) == 4  # every generation of both backends served traffic
