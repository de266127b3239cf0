"""/openapi.json documents the headers the middleware reads and answers with, and, with
AUTH_ENABLED, the credentials each route needs (schemathesis generates and checks them all:
tests/server/test_schemathesis.py)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.edge.auth import digest
from server.live.loaded_model import LoadedModel
from server.live.model_store import ModelStore
from server.settings import ServerSettings

SCOPED = {"/predict", "/batch-predict", "/invocations", "/model/metadata", "/model/features"}
SCOPED |= {"/model/versions", "/model/reload", "/model/variants", "/model/drift", "/predictions"}
OPEN_INFERENCE = {
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
    "/v1/models/{name}:predict",
}
PREDICTIONS = {"/predict", "/batch-predict", "/invocations"} | OPEN_INFERENCE
SCOPED |= PREDICTIONS | {"/v2", "/v1/models/{name}", "/v2/models/{name}", "/v2/models/{name}/ready"}
SCOPED |= {"/v2/models/{name}/versions/{version}", "/v2/models/{name}/versions/{version}/ready"}
OPEN = {"/health", "/ping", "/webhooks/mlflow", "/v2/health/live", "/v2/health/ready"}
METRICS = {"/metrics", "/prometheus-metrics"}


def _document(settings: ServerSettings, model: LoadedModel, **options: object) -> dict[str, Any]:
    configured = ServerSettings(
        model_uri=settings.model_uri, mlflow_tracking_uri=settings.mlflow_tracking_uri, **options
    )
    with TestClient(create_app(configured, store=ModelStore(model))) as client:
        return client.get("/openapi.json").json()


def _operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(path, operation) for path, item in document["paths"].items() for operation in item.values()]


def _auth(metrics_auth: bool) -> dict[str, object]:
    key = secrets.token_urlsafe(32)
    return {"auth_enabled": True, "api_keys": f"a:{digest(key)}:predict", "metrics_auth": metrics_auth}


def test_every_operation_takes_an_optional_request_id(client: TestClient) -> None:
    for path, operation in _operations(client.get("/openapi.json").json()):
        headers = [p for p in operation["parameters"] if p["in"] == "header"]
        expected = [("X-Request-ID", False, {"type": "string"})]
        if path in PREDICTIONS:
            expected.append(("X-Routing-Key", False, {"type": "string"}))
        assert [(p["name"], p["required"], p["schema"]) for p in headers] == expected, path


def test_every_answer_carries_a_plain_request_id(client: TestClient) -> None:
    for path, operation in _operations(client.get("/openapi.json").json()):
        for status, response in operation["responses"].items():
            header = response["headers"]["X-Request-ID"]
            assert header["required"] is True, (path, status)
            assert header["schema"]["pattern"] == "^[A-Za-z0-9._:-]{1,128}$"


def test_every_prediction_carries_the_model_version(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in sorted(PREDICTIONS):
        responses = paths[path]["post"]["responses"]
        assert responses["200"]["headers"]["X-Model-Version"]["required"] is True
        assert responses["200"]["headers"]["X-Model-Variant"]["schema"]["enum"] == ["champion", "challenger"]
        assert "X-Model-Version" not in responses["422"]["headers"]
    assert "X-Model-Version" not in paths["/health"]["get"]["responses"]["200"]["headers"]


def test_without_authentication_no_credential_is_documented(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert "securitySchemes" not in document["components"]
    assert all("security" not in operation for _, operation in _operations(document))


@pytest.mark.parametrize("metrics_auth", [False, True], ids=["metrics open", "METRICS_AUTH"])
def test_with_authentication_each_scoped_route_documents_its_credentials(
    settings: ServerSettings, loaded_champion: LoadedModel, metrics_auth: bool
) -> None:
    document = _document(settings, loaded_champion, **_auth(metrics_auth))
    assert document["components"]["securitySchemes"] == {
        "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key."},
        "Bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key, or a JWT when JWT_ALGORITHM is set.",
        },
    }
    secured = {path for path, operation in _operations(document) if "security" in operation}
    assert secured == SCOPED | (METRICS if metrics_auth else set())
    assert not secured & OPEN
    reload = document["paths"]["/model/reload"]["post"]
    assert reload["security"] == [{"ApiKey": []}, {"Bearer": []}]
    assert reload["description"].endswith("Needs a credential with the `admin` scope.")
    variants = document["paths"]["/model/variants"]
    assert variants["get"]["description"].endswith("Needs a credential with the `predict` scope.")
    assert variants["put"]["description"].endswith("Needs a credential with the `admin` scope.")
    predictions = document["paths"]["/predictions"]["get"]
    assert predictions["description"].endswith("Needs a credential with the `admin` scope.")
