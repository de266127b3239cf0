"""/health (liveness) and /ping (readiness)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from server.app import create_app
from server.live.loaded_model import LoadedModel
from server.live.model_store import ModelStore
from server.settings import ServerSettings


def test_health_says_the_process_is_up_and_nothing_more(
    client: TestClient, loaded_champion: LoadedModel
) -> None:
    """Open to anyone: no model URI, registry errors or reload reasons (those need `predict`)."""
    body = client.get("/health").json()
    assert set(body) == {"status", "model_loaded", "model_version", "uptime_seconds"}
    assert (body["status"], body["model_loaded"]) == ("ok", True)
    assert body["model_version"] == loaded_champion.source.version
    assert 0 <= body["uptime_seconds"] < 600


def test_how_following_goes_is_in_the_model_metadata(client: TestClient) -> None:
    body = client.get("/model/metadata").json()
    assert body["model_uri"] == "models:/breast-cancer-classifier@champion"
    assert body["registry"]["following"] == "models:/breast-cancer-classifier@champion"
    assert body["registry"]["reachable"] is True
    assert body["last_reload_error"] is None


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


def test_ping_keeps_the_models_own_words_to_the_log(
    settings: ServerSettings, loaded_champion: LoadedModel, monkeypatch, caplog
) -> None:
    def fail(rows):
        raise RuntimeError("internal detail of the model")

    monkeypatch.setattr(loaded_champion.runtime, "score", fail)
    with TestClient(create_app(settings, store=ModelStore(loaded_champion))) as client:
        response = client.get("/ping")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "model_version": None,
        "reason": "the model does not answer its input example",
    }
    assert "internal detail of the model" in caplog.text
