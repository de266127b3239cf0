"""POST /batch-predict: 1 … MAX_BATCH_SIZE records, answered in order, errors by record index."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from server.live.loaded_model import LoadedModel
from tests.server.conftest import JSON_HEADERS, json_with_literal, record


def test_batch_answers_each_record_in_order(
    client: TestClient, dataset: pd.DataFrame, loaded_champion: LoadedModel
) -> None:
    records = [record(dataset, i) for i in range(10)]
    response = client.post("/batch-predict", json={"records": records})
    assert response.status_code == 200
    body = response.json()
    expected = loaded_champion.pyfunc.predict(dataset.head(10))
    assert body["count"] == 10
    assert body["model_version"] == loaded_champion.source.version
    assert [p["prediction"] for p in body["predictions"]] == expected["prediction"].tolist()
    assert [p["label"] for p in body["predictions"]] == expected["label"].tolist()
    np.testing.assert_array_equal(
        [p["probabilities"]["malignant"] for p in body["predictions"]], expected["probability_malignant"]
    )
    assert response.headers["x-model-version"] == loaded_champion.source.version


def test_seed_example_of_two_records(client: TestClient, dataset: pd.DataFrame) -> None:
    response = client.post("/batch-predict", json={"records": [record(dataset, 0), record(dataset, 19)]})
    assert response.status_code == 200
    assert [p["label"] for p in response.json()["predictions"]] == ["malignant", "benign"]


def test_problem_names_the_record_index_and_field(client: TestClient, dataset: pd.DataFrame) -> None:
    records = [record(dataset, i) for i in range(4)]
    records[2]["feature_9"] = "high"
    del records[3]["feature_30"]
    response = client.post("/batch-predict", json={"records": records})
    assert response.status_code == 422
    assert response.json()["details"] == [
        {"index": 2, "field": "feature_9", "message": "must be a number, not a string"},
        {"index": 3, "field": "feature_30", "message": "is required"},
    ]
    assert (
        response.json()["message"]
        == "record 2, feature_9: must be a number, not a string (and 1 more problem)"
    )


def test_non_finite_value_in_a_batch_names_the_record(client: TestClient, dataset: pd.DataFrame) -> None:
    bad = json_with_literal(record(dataset, 1), "feature_4", "NaN").decode()
    raw = f'{{"records": [{pd.Series(record(dataset, 0)).to_json()}, {bad}]}}'
    response = client.post("/batch-predict", content=raw, headers=JSON_HEADERS)
    assert response.status_code == 422
    assert response.json()["details"] == [
        {"index": 1, "field": "feature_4", "message": "must be a finite number"}
    ]


def test_record_that_is_not_an_object_names_its_index(client: TestClient, dataset: pd.DataFrame) -> None:
    response = client.post("/batch-predict", json={"records": [record(dataset), [1, 2, 3]]})
    assert response.json()["details"] == [
        {"index": 1, "message": "must be a JSON object of features, not an array"}
    ]


def test_empty_batch_is_refused(client: TestClient) -> None:
    response = client.post("/batch-predict", json={"records": []})
    assert response.status_code == 422
    assert response.json()["details"] == [{"field": "records", "message": "must hold 1 to 50 records, got 0"}]


def test_batch_over_max_batch_size_is_refused(client: TestClient, dataset: pd.DataFrame) -> None:
    response = client.post("/batch-predict", json={"records": [record(dataset)] * 51})
    assert response.status_code == 422
    assert response.json()["details"] == [
        {"field": "records", "message": "must hold 1 to 50 records, got 51"}
    ]


def test_batch_of_exactly_max_batch_size_is_served(client: TestClient, dataset: pd.DataFrame) -> None:
    response = client.post("/batch-predict", json={"records": [record(dataset, i) for i in range(50)]})
    assert response.status_code == 200
    assert response.json()["count"] == 50


@pytest.mark.parametrize(
    ("body", "details"),
    [
        ({}, [{"field": "records", "message": "is required"}]),
        ({"records": {"a": 1}}, [{"field": "records", "message": "must be an array"}]),
        ({"records": [], "extra": 1}, [{"position": 1, "message": "is not accepted here"}]),
        ([1], [{"message": "body must be a JSON object, not an array"}]),
    ],
)
def test_malformed_envelope_is_named(
    client: TestClient, body: object, details: list[dict[str, object]]
) -> None:
    response = client.post("/batch-predict", json=body)
    assert response.status_code == 422
    assert response.json()["details"] == details


def test_extra_top_level_keys_are_named_by_position_and_counted(
    client: TestClient, dataset: pd.DataFrame
) -> None:
    """The client's keys never come back; past MAX_PROBLEMS they are only counted."""
    body = {
        **{f"s3cr3t-{i}": 1 for i in range(30)},
        "records": [record(dataset)],
        **{f"x{i}": 1 for i in range(70)},
    }
    response = client.post("/batch-predict", json=body)
    assert response.status_code == 422
    assert response.json() == {
        "error_code": "INVALID_INPUT",
        "message": "key at position 0: is not accepted here (and 99 more problems)",
        "details": [
            {"position": i if i < 30 else i + 1, "message": "is not accepted here"} for i in range(50)
        ],
        "request_id": response.headers["x-request-id"],
    }


def test_unknown_keys_in_records_are_named_by_position_up_to_the_limit(
    client: TestClient, dataset: pd.DataFrame
) -> None:
    records = [{**record(dataset), "s3cr3t-a": 1, "s3cr3t-b": 2} for _ in range(40)]
    response = client.post("/batch-predict", json={"records": records})
    assert response.status_code == 422
    body = response.json()
    assert (
        body["message"]
        == "record 0, key at position 30: is not a feature of this model (and 79 more problems)"
    )
    assert body["details"] == [
        {"index": i // 2, "position": 30 + i % 2, "message": "is not a feature of this model"}
        for i in range(50)
    ]
    assert "s3cr3t" not in response.text


def test_a_record_of_700k_unknown_keys_is_one_bounded_problem(
    client: TestClient, dataset: pd.DataFrame
) -> None:
    """The review's body: 9.7 MB, one record of ~700k unknown keys (seconds of synchronous
    validation once, and 50 of the keys quoted back). One problem now, found without listing them."""
    big = {**record(dataset), **{f"k{i}": 0 for i in range(700_000)}}
    response = client.post("/batch-predict", json={"records": [record(dataset), big]})
    assert response.status_code == 422
    assert response.json() == {
        "error_code": "INVALID_INPUT",
        "message": "record 1: too many keys (700030); a record may hold at most 1024",
        "details": [{"index": 1, "message": "too many keys (700030); a record may hold at most 1024"}],
        "request_id": response.headers["x-request-id"],
    }
