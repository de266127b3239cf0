"""CORS (off unless configured) and the docs switch."""

from __future__ import annotations

import pandas as pd
from fastapi.testclient import TestClient

from server.app import create_app
from server.live.loaded_model import LoadedModel
from server.live.model_store import ModelStore
from server.settings import ServerSettings
from tests.server.conftest import record


def _client(settings: ServerSettings, model: LoadedModel, **options: object) -> TestClient:
    configured = ServerSettings(
        model_uri=settings.model_uri, mlflow_tracking_uri=settings.mlflow_tracking_uri, **options
    )
    return TestClient(create_app(configured, store=ModelStore(model)))


def test_cors_is_off_by_default(client: TestClient, dataset: pd.DataFrame) -> None:
    response = client.post("/predict", json=record(dataset), headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in response.headers


def test_configured_origins_get_cors_headers_on_the_fast_lane_too(
    settings: ServerSettings, loaded_champion: LoadedModel, dataset: pd.DataFrame
) -> None:
    client = _client(settings, loaded_champion, cors_origins="https://app.example")
    preflight = client.options(
        "/predict",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"},
    )  # fmt: skip
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    answer = client.post("/predict", json=record(dataset), headers={"Origin": "https://app.example"})
    assert answer.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-model-version" in answer.headers["access-control-expose-headers"]
    other = client.post("/predict", json=record(dataset), headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_docs_can_be_turned_off(settings: ServerSettings, loaded_champion: LoadedModel) -> None:
    client = _client(settings, loaded_champion, docs_enabled=False)
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 404
    assert client.get("/health").status_code == 200
