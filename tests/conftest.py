"""The fixture chain: a real MLflow tracking server (session) -> a registered model -> clients.

Nothing of MLflow is mocked: the server is `mlflow server` on a temporary SQLite store, and
the registry scripts run as subprocesses with an explicit environment.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from registry_scripts.tracking_server import TrackingServer
from tests.helpers import run_ok

DEFAULT_MODEL = "breast-cancer-classifier"


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    # The webhook tests have MLflow deliver to a server on http://127.0.0.1: a private address
    # over plain HTTP, which MLflow refuses unless told otherwise (as in compose and Kubernetes).
    # MLflow also caches its list of webhooks (60 s by default): a second, so new ones fire soon.
    env = {
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
    }
    with TrackingServer(tmp_path_factory.mktemp("mlflow"), env=env) as server:
        # The test process itself talks to this server only (downloads, direct client calls).
        mlflow.set_tracking_uri(server.url)
        mlflow.set_registry_uri(server.url)
        yield server


@pytest.fixture(scope="session")
def base_env(tracking_server: TrackingServer) -> dict[str, str]:
    """The environment a registry script gets: this process's, pointed at the test server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MODEL_"))}
    env.update(
        MLFLOW_TRACKING_URI=tracking_server.url,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="2",
        PYTHONWARNINGS="ignore",
    )
    return env


@pytest.fixture(scope="session")
def client_mlflow(tracking_server: TrackingServer) -> MlflowClient:
    return MlflowClient(tracking_server.url)


@pytest.fixture(scope="session")
def champion_version(base_env: dict[str, str]) -> str:
    """The default model trained once per session and promoted to `@champion`."""
    return run_ok("registry_scripts.train", "--promote", env={**base_env, "MODEL_NAME": DEFAULT_MODEL})


@pytest.fixture(scope="session")
def champion_uri(champion_version: str) -> str:
    return f"models:/{DEFAULT_MODEL}@champion"


@pytest.fixture
def model_env(base_env: dict[str, str]) -> dict[str, str]:
    """An environment naming a registered model of this test's own, so alias moves never collide."""
    return {**base_env, "MODEL_NAME": f"test-{uuid.uuid4().hex[:10]}"}


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
