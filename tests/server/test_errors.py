"""The one error shape, request ids, unknown routes, methods and unexpected failures."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from server.live.loaded_model import LoadedModel
from server.routes import predictions
from tests.server.conftest import record


def test_request_id_is_taken_from_the_request_and_echoed(client: TestClient) -> None:
    response = client.get("/health", headers={"X-Request-ID": "client-id-42"})
    assert response.headers["x-request-id"] == "client-id-42"


@pytest.mark.parametrize("given", [None, "", "has spaces", "x" * 129, "new\u00e9line"])
def test_unusable_request_id_is_replaced(client: TestClient, given: str | None) -> None:
    headers = {"X-Request-ID": given.encode("utf-8")} if given is not None else {}
    response = client.get("/health", headers=headers)
    generated = response.headers["x-request-id"]
    assert generated != given
    assert len(generated) == 32


def test_error_body_carries_the_request_id(client: TestClient) -> None:
    response = client.post("/predict", json={}, headers={"X-Request-ID": "abc-1"})
    assert response.json()["request_id"] == "abc-1"


def test_unknown_route_is_a_json_404_that_does_not_repeat_the_path(client: TestClient) -> None:
    response = client.get("/nope-a-path-of-the-clients", headers={"X-Request-ID": "r1"})
    assert response.status_code == 404
    assert response.json() == {
        "error_code": "NOT_FOUND",
        "message": "no endpoint at this path",
        "request_id": "r1",
    }


def test_wrong_method_is_a_json_405(client: TestClient) -> None:
    response = client.get("/predict", headers={"X-Request-ID": "r2"})
    assert response.status_code == 405
    assert response.json() == {
        "error_code": "METHOD_NOT_ALLOWED",
        "message": "method not allowed here; allowed: POST",
        "request_id": "r2",
    }
    assert response.headers["allow"] == "POST"


def test_unexpected_failure_is_a_500_with_only_the_request_id(
    client: TestClient, dataset: pd.DataFrame, loaded_champion: LoadedModel, monkeypatch, caplog
) -> None:
    def explode(model):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(predictions, "prediction_encoder", explode)  # a bug of ours, not the model's
    with caplog.at_level(logging.ERROR, logger="server.requests"):
        response = client.post("/predict", json=record(dataset), headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.json() == {
        "error_code": "INTERNAL_ERROR",
        "message": "internal error; quote the request id when reporting it",
        "request_id": "boom-1",
    }
    assert "secret internal detail" not in response.text
    assert "unhandled error on POST '/predict'" in caplog.text
    assert any("secret internal detail" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_a_model_that_raises_on_valid_input_is_a_400_naming_only_the_exception_type(
    client: TestClient, dataset: pd.DataFrame, loaded_champion: LoadedModel, monkeypatch
) -> None:
    def explode(features):
        raise ValueError("secret model detail")

    monkeypatch.setattr(loaded_champion.runtime, "score", explode)
    response = client.post("/predict", json=record(dataset), headers={"X-Request-ID": "m-1"})
    assert response.status_code == 400
    assert response.json() == {
        "error_code": "MODEL_ERROR",
        "message": "the model failed on this input: ValueError",
        "request_id": "m-1",
    }
    invocations = client.post(
        "/invocations", json={"dataframe_records": [record(dataset)]}, headers={"X-Request-ID": "m-2"}
    )
    assert invocations.status_code == 400
    assert invocations.json() == {
        "error_code": "BAD_REQUEST",
        "message": "Encountered an unexpected error while evaluating the model. Verify that the serialized "
        "input Dataframe is compatible with the model for inference.",
        "request_id": "m-2",
    }
