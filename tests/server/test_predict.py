"""POST /predict: one record in, class, label and probabilities out."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from server.live.loaded_model import LoadedModel
from tests.server.conftest import JSON_HEADERS, json_with_literal, record


def test_predict_answers_class_label_probabilities_and_version(
    client: TestClient, dataset: pd.DataFrame, loaded_champion: LoadedModel
) -> None:
    response = client.post("/predict", json=record(dataset, 0))
    assert response.status_code == 200
    expected = loaded_champion.pyfunc.predict(dataset.head(1)).iloc[0]
    assert response.json() == {
        "prediction": int(expected["prediction"]),
        "label": expected["label"],
        "probabilities": {
            "malignant": expected["probability_malignant"],
            "benign": expected["probability_benign"],
        },
        "model_version": loaded_champion.source.version,
    }
    assert response.headers["x-model-version"] == loaded_champion.source.version


def test_predict_accepts_integers_as_numbers(client: TestClient, dataset: pd.DataFrame) -> None:
    body = {name: round(value) for name, value in record(dataset).items()}
    assert client.post("/predict", json=body).status_code == 200


def test_predict_matches_pyfunc_row_by_row(
    client: TestClient, dataset: pd.DataFrame, loaded_champion: LoadedModel
) -> None:
    rows = range(0, len(dataset), 7)
    expected = pd.concat([loaded_champion.pyfunc.predict(dataset.iloc[[i]]) for i in rows])
    answers = [client.post("/predict", json=record(dataset, i)).json() for i in rows]
    np.testing.assert_array_equal([a["prediction"] for a in answers], expected["prediction"].to_numpy())
    np.testing.assert_array_equal([a["label"] for a in answers], expected["label"].to_numpy())
    np.testing.assert_array_equal(
        [a["probabilities"]["benign"] for a in answers], expected["probability_benign"].to_numpy()
    )


def test_missing_field_is_named(client: TestClient, dataset: pd.DataFrame) -> None:
    body = record(dataset)
    del body["feature_7"]
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert response.json() == {
        "error_code": "INVALID_INPUT",
        "message": "feature_7: is required",
        "details": [{"field": "feature_7", "message": "is required"}],
        "request_id": response.headers["x-request-id"],
    }


def test_extra_field_is_named_by_position_not_quoted(client: TestClient, dataset: pd.DataFrame) -> None:
    """The key is the client's text (a 1 MB key once made a 2 MB answer): its place says which."""
    response = client.post("/predict", json={**record(dataset), "k" * 1_000_000: 1.0})
    assert response.status_code == 422
    assert response.json() == {
        "error_code": "INVALID_INPUT",
        "message": "key at position 30: is not a feature of this model",
        "details": [{"position": 30, "message": "is not a feature of this model"}],
        "request_id": response.headers["x-request-id"],
    }


def test_a_record_of_700k_unknown_keys_is_one_bounded_problem(
    client: TestClient, dataset: pd.DataFrame
) -> None:
    """Named without looking at the keys (it once took seconds of the event loop to list them)."""
    body = {**record(dataset), **{f"k{i}": 0 for i in range(700_000)}}
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert response.json() == {
        "error_code": "INVALID_INPUT",
        "message": "too many keys (700030); a record may hold at most 1024",
        "details": [{"message": "too many keys (700030); a record may hold at most 1024"}],
        "request_id": response.headers["x-request-id"],
    }


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("1.5", "must be a number, not a string"),
        (None, "must be a number, not null"),
        (True, "must be a number, not a boolean"),
        ({"v": 1}, "must be a number, not an object"),
        ([1.0], "must be a number, not an array"),
    ],
)
def test_non_numeric_value_is_named(
    client: TestClient, dataset: pd.DataFrame, value: object, problem: str
) -> None:
    response = client.post("/predict", json={**record(dataset), "feature_3": value})
    assert response.status_code == 422
    assert response.json()["details"] == [{"field": "feature_3", "message": problem}]
    assert response.json()["message"] == f"feature_3: {problem}"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
def test_non_finite_number_is_named(client: TestClient, dataset: pd.DataFrame, literal: str) -> None:
    raw = json_with_literal(record(dataset), "feature_12", literal)
    response = client.post("/predict", content=raw, headers=JSON_HEADERS)
    assert response.status_code == 422
    assert response.json()["details"] == [{"field": "feature_12", "message": "must be a finite number"}]


def test_integer_overflowing_a_double_is_named(client: TestClient, dataset: pd.DataFrame) -> None:
    raw = json_with_literal(record(dataset), "feature_5", "9" * 400)
    response = client.post("/predict", content=raw, headers=JSON_HEADERS)
    assert response.status_code == 422
    assert response.json()["details"] == [
        {"field": "feature_5", "message": "must be a finite number (it overflows a double)"}
    ]


def test_every_problem_is_reported(client: TestClient, dataset: pd.DataFrame) -> None:
    body = record(dataset)
    del body["feature_1"]
    body["feature_2"] = "x"
    body["colour"] = "red"
    response = client.post("/predict", json=body)
    assert response.json()["details"] == [
        {"field": "feature_1", "message": "is required"},
        {"field": "feature_2", "message": "must be a number, not a string"},
        {"position": 29, "message": "is not a feature of this model"},
    ]
    assert response.json()["message"] == "feature_1: is required (and 2 more problems)"


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "3"])
def test_body_that_is_not_an_object_is_refused(client: TestClient, body: str) -> None:
    response = client.post("/predict", content=body, headers=JSON_HEADERS)
    assert response.status_code == 422
    assert response.json()["details"][0]["message"].startswith("must be a JSON object of features")


def test_invalid_json_is_a_400(client: TestClient) -> None:
    response = client.post("/predict", content=b'{"feature_1": 1.0,', headers=JSON_HEADERS)
    assert response.status_code == 400
    body = response.json()
    assert body["error_code"] == "MALFORMED_REQUEST"
    assert body["message"].startswith("request body is not valid JSON at line 1, column 19")


def test_body_that_is_not_utf8_is_a_400(client: TestClient) -> None:
    response = client.post("/predict", content=b'{"a": "\xff"}', headers=JSON_HEADERS)
    assert response.status_code == 400
    assert response.json()["message"] == "request body is not valid JSON: it is not valid UTF-8"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_other_content_types_are_415(
    client: TestClient, dataset: pd.DataFrame, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/predict", content=json.dumps(record(dataset)), headers=headers)
    assert response.status_code == 415
    assert response.json()["message"] == "content type must be application/json"


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        ("text/s3cr3t-type", "content type must be application/json"),
        ("application/json; charset=s3cr3t-charset", "charset must be utf-8"),
    ],
)
def test_refused_content_types_are_not_echoed(
    client: TestClient, dataset: pd.DataFrame, content_type: str, message: str
) -> None:
    response = client.post(
        "/predict", content=json.dumps(record(dataset)), headers={"content-type": content_type}
    )
    assert response.status_code == 415
    assert response.json() == {
        "error_code": "UNSUPPORTED_MEDIA_TYPE",
        "message": message,
        "request_id": response.headers["x-request-id"],
    }


@pytest.mark.parametrize("route", ["/predict", "/batch-predict"])
def test_a_compressed_body_is_refused_not_misread(
    client: TestClient, dataset: pd.DataFrame, route: str
) -> None:
    """The server decompresses nothing; a gzip body would otherwise be answered as broken JSON."""
    document = record(dataset) if route == "/predict" else {"records": [record(dataset)]}
    headers = {**JSON_HEADERS, "content-encoding": "gzip"}
    response = client.post(route, content=gzip.compress(json.dumps(document).encode()), headers=headers)
    assert response.status_code == 415
    assert response.json() == {
        "error_code": "UNSUPPORTED_MEDIA_TYPE",
        "message": "compressed request bodies are not accepted; send the body with no Content-Encoding",
        "request_id": response.headers["x-request-id"],
    }
    identity = {**JSON_HEADERS, "content-encoding": "identity"}
    assert client.post(route, content=json.dumps(document), headers=identity).status_code == 200


def test_json_with_utf8_charset_is_accepted(client: TestClient, dataset: pd.DataFrame) -> None:
    response = client.post(
        "/predict",
        content=json.dumps(record(dataset)),
        headers={"content-type": "application/json; charset=UTF-8"},
    )
    assert response.status_code == 200


def test_body_over_the_limit_is_413(app, client: TestClient) -> None:
    limit = app.state.services.settings.max_body_bytes
    response = client.post("/predict", content=b"{" + b" " * limit + b"}", headers=JSON_HEADERS)
    assert response.status_code == 413
    assert response.json()["message"] == f"request body exceeds the limit of {limit} bytes"


def test_chunked_body_over_the_limit_is_413(app, client: TestClient) -> None:
    limit = app.state.services.settings.max_body_bytes

    def chunks():
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    response = client.post("/predict", content=chunks(), headers=JSON_HEADERS)
    assert response.status_code == 413


def test_values_beyond_the_documented_range_are_named(client: TestClient, dataset: pd.DataFrame) -> None:
    body = {**record(dataset), "feature_7": -1.7976931348623155e308, "feature_26": 1e101}
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert response.json()["details"] == [
        {"field": "feature_7", "message": "must lie between -1e+100 and 1e+100"},
        {"field": "feature_26", "message": "must lie between -1e+100 and 1e+100"},
    ]
    assert client.post("/predict", json={**record(dataset), "feature_7": -1e100}).status_code == 200


def test_answers_that_are_not_numbers_are_refused_by_record(
    client: TestClient, dataset: pd.DataFrame, loaded_champion: LoadedModel, monkeypatch
) -> None:
    honest = loaded_champion.runtime.score

    def overflowing(features):
        prediction = honest(features)
        prediction.probabilities[1] = np.nan
        return prediction

    monkeypatch.setattr(loaded_champion.runtime, "score", overflowing)
    response = client.post("/batch-predict", json={"records": [record(dataset, 0), record(dataset, 1)]})
    assert response.status_code == 422
    assert response.json()["details"] == [
        {
            "index": 1,
            "message": "the model cannot score this record: "
            "its values lie too far outside the range it was trained on",
        }
    ]
