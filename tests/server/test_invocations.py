"""/invocations in process: which bodies take the fast path, MLflow's content-type rules, scrubbing.

The full comparison with `mlflow models serve` is `tests/e2e/test_invocations_differential.py`.
"""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from server.codecs.mlflow_protocol import (
    FastRequest,
    InvocationCodec,
    PendingRequest,
    ProtocolError,
    media_type_of,
    scrub,
)
from server.errors import UnsupportedMediaType
from server.loaded_model import LoadedModel


@pytest.fixture
def codec(loaded_champion: LoadedModel) -> InvocationCodec:
    return InvocationCodec(loaded_champion.pyfunc, loaded_champion.feature_names, fast=True)


def _split(frame: pd.DataFrame, **extra: object) -> bytes:
    return json.dumps(
        {"dataframe_split": {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}, **extra}
    ).encode()


def test_plain_layouts_take_the_fast_path(codec: InvocationCodec, dataset: pd.DataFrame) -> None:
    five = dataset.head(5)
    bodies = [
        _split(five),
        _split(five[five.columns[::-1]]),
        _split(five.assign(extra=1.0)),
        _split(five, params={"x": 1}),
        json.dumps({"params": {"note": "x" * 2000}, **json.loads(_split(five))}).encode(),
        json.dumps({"dataframe_records": five.to_dict("records")}).encode(),
        json.dumps({"instances": five.to_dict("records")}).encode(),
        json.dumps({"inputs": five.to_dict("records")}).encode(),
        json.dumps({"inputs": five.to_dict("list")}).encode(),
    ]
    for body in bodies:
        decoded = codec.decode(body, "application/json")
        assert isinstance(decoded, FastRequest), body[:80]
        pd.testing.assert_frame_equal(
            pd.DataFrame(decoded.features, columns=five.columns), five.reset_index(drop=True)
        )


def test_anything_unusual_goes_to_mlflows_parsers(codec: InvocationCodec, dataset: pd.DataFrame) -> None:
    one = dataset.head(1)
    bodies = [
        json.dumps(
            {"dataframe_split": {"columns": list(one.columns), "data": one.to_numpy().tolist(), "index": [7]}}
        ),
        _split(one.astype(str)).decode(),
        _split(one.assign(feature_2=True)).decode(),
        _split(one.assign(feature_2=None)).decode(),
        json.dumps({"dataframe_split": {"columns": list(one.columns), "data": []}}),
        _split(one, meta=1).decode(),
        json.dumps({"dataframe_records": one.drop(columns="feature_1").to_dict("records")}),
        json.dumps({"instances": one.to_numpy().tolist()}),
    ]
    for body in bodies:
        assert isinstance(codec.decode(body.encode(), "application/json"), PendingRequest), body[:80]
    assert isinstance(codec.decode(b"feature_1\n1\n", "text/csv"), PendingRequest)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("application/json", "application/json"),
        ("application/json; charset=UTF-8", "application/json"),
        ("text/csv", "text/csv"),
        ("application/vnd.apache.parquet", "application/vnd.apache.parquet"),
    ],
)
def test_accepted_media_types(header: str, expected: str) -> None:
    assert media_type_of(header) == expected


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "a Content-Type header is required"),
        ("text/plain", "This predictor only supports the following content types"),
        ("application/json; charset=latin-1", "The scoring server only supports UTF-8"),
        ("application/json; format=pandas-split", "Unrecognized content type parameters: format"),
        ("Application/JSON", "This predictor only supports the following content types"),
    ],
)
def test_refused_media_types_are_415(header: str | None, message: str) -> None:
    with pytest.raises(UnsupportedMediaType, match=message):
        media_type_of(header)


def test_scrub_removes_values_sent_but_keeps_names() -> None:
    error = ProtocolError("could not convert 'secret-77' for column 'feature_2' (dataframe)")
    body = b'{"dataframe_split": {"columns": ["feature_2"], "data": [["secret-77"]]}}'
    scrubbed = scrub(error, body, frozenset({"feature_2", "dataframe_split"}))
    assert scrubbed.message == "could not convert '…' for column 'feature_2' (dataframe)"


def test_invocations_answer_carries_the_model_version(client: TestClient, dataset: pd.DataFrame) -> None:
    response = client.post(
        "/invocations", content=_split(dataset.head(2)), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 2
    assert response.headers["x-model-version"]


@pytest.mark.parametrize("layout", ["json", "csv", "parquet"])
def test_max_batch_size_holds_for_every_format(
    client: TestClient, dataset: pd.DataFrame, layout: str
) -> None:
    rows = dataset[:51]  # the test settings allow 50
    if layout == "json":
        content, media_type = _split(rows), "application/json"
    elif layout == "csv":
        content, media_type = rows.to_csv(index=False).encode(), "text/csv"
    else:
        buffer = io.BytesIO()
        rows.to_parquet(buffer)
        content, media_type = buffer.getvalue(), "application/vnd.apache.parquet"
    response = client.post("/invocations", content=content, headers={"content-type": media_type})
    assert response.status_code == 422
    assert response.json()["message"] == "the request holds 51 rows; at most 50 per request"
    assert (
        client.post(
            "/invocations", content=_split(rows[:50]), headers={"content-type": "application/json"}
        ).status_code
        == 200
    )
