"""/openapi.json, /docs and /redoc describe the real request fields, taken from the signature."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_predict_request_lists_every_feature_from_the_signature(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    record = schema["components"]["schemas"]["PredictRequest"]
    names = [f"feature_{i}" for i in range(1, 31)]
    assert list(record["properties"]) == names
    assert record["required"] == names
    assert record["additionalProperties"] is False
    assert record["properties"]["feature_1"] == {
        "type": "number",
        "format": "double",
        "minimum": -1e100,
        "maximum": 1e100,
    }
    assert set(record["example"]) == set(names)


def test_routes_point_at_the_derived_bodies(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    body = paths["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/PredictRequest"}
    batch = paths["/batch-predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert batch == {"$ref": "#/components/schemas/BatchPredictRequest"}
    invocations = paths["/invocations"]["post"]["requestBody"]["content"]
    assert set(invocations) == {"application/json"}
    description = paths["/invocations"]["post"]["description"]
    assert "text/csv" in description
    assert "application/vnd.apache.parquet" in description


def test_batch_limit_comes_from_settings(client: TestClient) -> None:
    batch = client.get("/openapi.json").json()["components"]["schemas"]["BatchPredictRequest"]
    assert batch["properties"]["records"]["maxItems"] == 50


def test_error_responses_are_documented(client: TestClient) -> None:
    responses = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["responses"]
    assert {"200", "400", "413", "415", "422", "503"} <= set(responses)
    assert responses["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }


def test_every_endpoint_is_listed(client: TestClient) -> None:
    paths = set(client.get("/openapi.json").json()["paths"])
    assert paths == {
        "/predict",
        "/batch-predict",
        "/invocations",
        "/model/metadata",
        "/model/features",
        "/health",
        "/ping",
        "/metrics",
        "/prometheus-metrics",
        "/model/reload",
        "/model/versions",
        "/model/variants",
        "/model/drift",
        "/predictions",
        "/webhooks/mlflow",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/{name}/versions/{version}/infer",
        "/v1/models/{name}",
        "/v1/models/{name}:predict",
    }


def test_docs_pages_are_served(client: TestClient) -> None:
    assert "swagger-ui" in client.get("/docs").text
    assert "redoc" in client.get("/redoc").text.lower()
