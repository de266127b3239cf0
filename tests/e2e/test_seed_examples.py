"""The seed's curl examples, against a real uvicorn process serving from the real registry."""

from __future__ import annotations

import httpx
import pandas as pd
import pytest

from registry_scripts.dataset import load_frame
from tests.server.metrics_text import sample


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return load_frame()[0]


def _record(rows: pd.DataFrame, i: int) -> dict[str, float]:
    return {k: float(v) for k, v in rows.iloc[i].items()}


def test_curl_health(api: httpx.Client) -> None:
    # curl http://localhost:8000/health
    response = api.get("/health")
    assert response.status_code == 200
    assert response.json()["model_loaded"] is True


def test_curl_predict_with_30_features(api: httpx.Client, rows: pd.DataFrame) -> None:
    # curl -X POST http://localhost:8000/predict -H 'Content-Type: application/json' -d '{"feature_1": …}'
    response = api.post("/predict", json=_record(rows, 0))
    assert response.status_code == 200
    body = response.json()
    assert body["label"] == "malignant"
    assert set(body["probabilities"]) == {"malignant", "benign"}
    assert response.headers["x-model-version"] == body["model_version"]


def test_curl_batch_of_two_records(api: httpx.Client, rows: pd.DataFrame) -> None:
    response = api.post("/batch-predict", json={"records": [_record(rows, 0), _record(rows, 19)]})
    assert response.status_code == 200
    assert [p["label"] for p in response.json()["predictions"]] == ["malignant", "benign"]


def test_curl_metrics_after_traffic(api: httpx.Client, rows: pd.DataFrame) -> None:
    before = api.get("/metrics").text
    api.post("/predict", json=_record(rows, 1))
    after = api.get("/metrics").text
    assert (
        sample(after, "prediction_requests_total", endpoint="/predict")
        == sample(before, "prediction_requests_total", endpoint="/predict") + 1
    )
    assert sample(after, "model_loaded") == 1


def test_docs_and_openapi_are_served(api: httpx.Client) -> None:
    assert api.get("/docs").status_code == 200
    assert api.get("/redoc").status_code == 200
    schema = api.get("/openapi.json").json()
    properties = schema["components"]["schemas"]["PredictRequest"]["properties"]
    assert list(properties) == [f"feature_{i}" for i in range(1, 31)]


def test_request_id_round_trip_over_http(api: httpx.Client) -> None:
    assert api.get("/ping", headers={"X-Request-ID": "e2e-7"}).headers["x-request-id"] == "e2e-7"
