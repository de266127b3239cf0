"""`python -m server` and `uvicorn server.app:app` as real processes: start-up, fail-fast, workers,
JSON logs, MODEL_PATH mode."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import skops.io as sio

from registry_scripts.dataset import load_frame
from registry_scripts.estimators import build_estimator
from registry_scripts.processes import ServerProcess, api_process, free_port
from registry_scripts.tracking_server import TrackingServer
from tests.helpers import run_ok, wait_for
from tests.server.metrics_text import model_info_pids, sample

ROW = {k: float(v) for k, v in load_frame()[0].iloc[0].items()}


def test_unreachable_registry_exits_non_zero_with_one_line(base_env: dict[str, str]) -> None:
    env = {
        **base_env,
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "MODEL_LOAD_TIMEOUT": "2",
        "API_PORT": str(free_port()),
    }
    # It gives up: a server that retried forever would run into the subprocess timeout.
    result = subprocess.run(
        [sys.executable, "-m", "server"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: could not load the model after ")
    assert "Traceback" not in result.stderr


def _log(server: ServerProcess) -> str:
    return server.log() if server.log_path.exists() else ""


def test_registry_that_starts_late_is_waited_for(base_env: dict[str, str], tmp_path: Path) -> None:
    registry = TrackingServer(tmp_path / "late-mlflow")
    env = {**base_env, "MLFLOW_TRACKING_URI": registry.url, "MODEL_LOAD_TIMEOUT": "120"}
    api = api_process(env, tmp_path / "api.log")
    starting = threading.Thread(target=lambda: api.start(timeout=180))
    starting.start()
    try:
        # The registry starts only once the server has failed to reach it.
        wait_for(lambda: "model load attempt 1 failed" in _log(api), 120, "a failed first attempt")
        with registry:
            run_ok("registry_scripts.train", env=env)
            starting.join(timeout=180)
            assert api.process is not None
            assert httpx.get(f"{api.url}/ping").status_code == 200
            api.stop()
    finally:
        api.stop()
        starting.join(timeout=5)


def test_uvicorn_import_string_builds_the_app_from_the_environment(
    base_env: dict[str, str], champion_uri: str, tmp_path: Path
) -> None:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "server.app:app", "--host", "127.0.0.1", "--port", str(port)]
    with ServerProcess(
        command, {**base_env, "MODEL_URI": champion_uri}, port, "/ping", tmp_path / "u.log"
    ) as server:
        response = httpx.post(f"{server.url}/predict", json=ROW)
        assert response.status_code == 200


def test_json_logs_carry_the_request_id(base_env: dict[str, str], champion_uri: str, tmp_path: Path) -> None:
    settings = {"MODEL_URI": champion_uri, "LOG_FORMAT": "json", "ACCESS_LOG": "true"}
    with api_process(base_env, tmp_path / "json.log", **settings) as server:
        # uvicorn writes a request's access line before it sends the answer: no wait needed.
        httpx.get(f"{server.url}/health", headers={"X-Request-ID": "json-log-1"})
        lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert lines, server.log()[-2000:]
    assert all({"time", "level", "logger", "message", "request_id"} <= set(line) for line in lines)
    assert any(line["request_id"] == "json-log-1" for line in lines)


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("access_log", ["true", "false"])
def test_access_log_setting_holds_for_every_worker_count(
    base_env: dict[str, str], champion_uri: str, tmp_path: Path, access_log: str, workers: str
) -> None:
    settings = {"MODEL_URI": champion_uri, "WORKERS": workers, "ACCESS_LOG": access_log}
    with api_process(base_env, tmp_path / "access.log", **settings) as server:
        if workers != "1":  # ready means one worker answers; the other may still be loading
            wait_for(
                lambda: len(model_info_pids(httpx.get(f"{server.url}/metrics").text)) == int(workers),
                60,
                "every worker loaded",
            )
        for _ in range(10):  # a new connection each, so both workers answer some
            assert httpx.post(f"{server.url}/predict", json=ROW).status_code == 200
        # Each access line is written before its answer is sent: all are in the log by now.
        logged = [line for line in server.log().splitlines() if '"POST /predict HTTP/1.1" 200' in line]
    assert len(logged) == (10 if access_log == "true" else 0)


def test_two_workers_add_their_metrics_up(
    base_env: dict[str, str], champion_uri: str, tmp_path: Path
) -> None:
    server = api_process(base_env, tmp_path / "w.log", MODEL_URI=champion_uri, WORKERS="2")
    with server, httpx.Client(base_url=server.url) as client:
        # Ready means one worker answers; the other may still be loading its copy of the model.
        wait_for(lambda: len(model_info_pids(client.get("/metrics").text)) == 2, 60, "both workers loaded")
        for _ in range(40):
            assert client.post("/predict", json=ROW).status_code == 200
        scrapes = [client.get("/metrics").text for _ in range(6)]
    assert {sample(text, "prediction_requests_total", endpoint="/predict") for text in scrapes} == {40.0}
    assert all(len(model_info_pids(text)) == 2 for text in scrapes)


def test_model_path_mode_serves_a_local_file(base_env: dict[str, str], tmp_path: Path) -> None:
    features, target, _ = load_frame()
    estimator = build_estimator("logistic_regression", 0).fit(features.to_numpy(), target.to_numpy())
    path = tmp_path / "model.skops"
    sio.dump(estimator, path)
    with api_process(base_env, tmp_path / "p.log", MODEL_URI="", MODEL_PATH=str(path)) as server:
        body = httpx.post(f"{server.url}/predict", json=ROW).json()
        assert body["label"] == "malignant"
        assert body["model_version"] is None
        assert httpx.get(f"{server.url}/model/metadata").json()["model_uri"] == str(path)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_server_shuts_down_cleanly_on_signal(
    base_env: dict[str, str], champion_uri: str, tmp_path: Path, stop_signal: signal.Signals
) -> None:
    server = api_process(base_env, tmp_path / "s.log", MODEL_URI=champion_uri).start()
    # uvicorn re-raises the signal once it has shut down, so the exit status names the signal.
    assert server.stop(stop_signal) in (0, -stop_signal)
    assert "Finished server process" in server.log()
    assert "Traceback" not in server.log()
