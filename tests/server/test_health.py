"""/health (liveness) and /ping (readiness)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from server.app import create_app
from server.loaded_model import LoadedModel
from server.model_store import ModelStore
from server.settings import ServerSettings


def test_health_reports_model_and_uptime(client: TestClient, loaded_champion: LoadedModel) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["model_loaded"] is True
    assert body["model_version"] == loaded_champion.source.version
    assert body["model_uri"] == "models:/breast-cancer-classifier@champion"
    assert 0 <= body["uptime_seconds"] < 60


def test_ping_is_ready_when_the_model_answers(client: TestClient, loaded_champion: LoadedModel) -> None:
    response = client.get("/ping")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "model_version": loaded_champion.source.version,
        "reason": None,
    }


def test_without_a_model_health_is_alive_and_ping_is_503(settings: ServerSettings) -> None:
    client = TestClient(create_app(settings, store=ModelStore()))  # no lifespan: nothing loads
    assert client.get("/health").json()["model_loaded"] is False
    response = client.get("/ping")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "model_version": None, "reason": "no model is loaded"}
    predict = client.post("/predict", json={})
    assert predict.status_code == 503
    assert predict.json()["error_code"] == "MODEL_NOT_READY"
