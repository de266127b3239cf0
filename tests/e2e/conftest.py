"""End-to-end fixtures: the API as a real uvicorn process, and `mlflow models serve` beside it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from registry_scripts.processes import ServerProcess, api_process, mlflow_scoring_process


@pytest.fixture(scope="session")
def api_server(base_env: dict[str, str], champion_uri: str, tmp_path_factory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("api") / "api.log"
    with api_process(base_env, log, MODEL_URI=champion_uri, MAX_BATCH_SIZE="1000") as server:
        yield server


@pytest.fixture(scope="session")
def mlflow_scoring(base_env: dict[str, str], champion_uri: str, tmp_path_factory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("mlflow-serve") / "serve.log"
    with mlflow_scoring_process(base_env, champion_uri, log) as server:
        yield server


@pytest.fixture
def api(api_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.url, timeout=30) as client:
        yield client
