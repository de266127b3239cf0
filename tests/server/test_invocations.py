"""/invocations in process: which bodies take the fast path, MLflow's content-type rules, scrubbing,
and the limits every format is held to before MLflow's parsers read it.

The full comparison with `mlflow models serve` is `tests/e2e/test_invocations_differential.py`;
the limits' own unit tests are `tests/server/test_body_limits.py`.
"""

from __future__ import annotations

import gzip
import io
import json

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from server.codecs.mlflow_protocol import (
    FastRequest,
    InvocationCodec,
    PendingRequest,
    media_type_of,
)
from server.errors import UnsupportedMediaType
from server.live.loaded_model import LoadedModel


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
        (
            "application/json; format=pandas-split",
            "Unrecognized content type parameters; only charset is accepted",
        ),
        ("Application/JSON", "This predictor only supports the following content types"),
    ],
)
def test_refused_media_types_are_415(header: str | None, message: str) -> None:
    with pytest.raises(UnsupportedMediaType) as raised:
        media_type_of(header)
    assert raised.value.message.startswith(message)


def test_unrecognized_content_type_parameters_are_not_named() -> None:
    """MLflow lists the parameters it does not know; they are the client's text."""
    with pytest.raises(UnsupportedMediaType) as raised:
        media_type_of("application/json; s3cr3t-param=1")
    assert raised.value.message == "Unrecognized content type parameters; only charset is accepted"


def test_invocations_answer_carries_the_model_version(client: TestClient, dataset: pd.DataFrame) -> None:
    response = client.post(
        "/invocations", content=_split(dataset.head(2)), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 2
    assert response.headers["x-model-version"]


@pytest.mark.parametrize(
    ("layout", "held"),
    [("json", "51"), ("json with an index", "51"), ("csv", "more than 50"), ("parquet", "51")],
)
def test_max_batch_size_holds_for_every_format(
    client: TestClient, dataset: pd.DataFrame, layout: str, held: str
) -> None:
    """Counted before MLflow's parsers run: exactly, or (CSV) up to the row past the limit."""
    rows = dataset[:51]  # the test settings allow 50
    if layout == "json":
        content, media_type = _split(rows), "application/json"
    elif layout == "json with an index":  # MLflow's path, not the fast one
        split = {"columns": list(rows.columns), "data": rows.to_numpy().tolist(), "index": list(range(51))}
        content, media_type = json.dumps({"dataframe_split": split}).encode(), "application/json"
    elif layout == "csv":
        content, media_type = rows.to_csv(index=False).encode(), "text/csv"
    else:
        buffer = io.BytesIO()
        rows.to_parquet(buffer)
        content, media_type = buffer.getvalue(), "application/vnd.apache.parquet"
    response = client.post("/invocations", content=content, headers={"content-type": media_type})
    assert response.status_code == 422
    assert response.json()["message"] == f"the request holds {held} rows; at most 50 per request"
    assert (
        client.post(
            "/invocations", content=_split(rows[:50]), headers={"content-type": "application/json"}
        ).status_code
        == 200
    )


JSON_TYPE = {"content-type": "application/json"}
PARQUET_TYPE = {"content-type": "application/vnd.apache.parquet"}


def _body_of(response) -> dict[str, object]:
    body = response.json()
    body.pop("request_id")
    return body


def test_a_compressed_body_is_refused_not_misread(client: TestClient, dataset: pd.DataFrame) -> None:
    """The server decompresses nothing; a gzip body would otherwise be answered as broken JSON."""
    body = gzip.compress(_split(dataset.head(1)))
    headers = {**JSON_TYPE, "content-encoding": "gzip"}
    response = client.post("/invocations", content=body, headers=headers)
    assert response.status_code == 415
    assert _body_of(response) == {
        "error_code": "UNSUPPORTED_MEDIA_TYPE",
        "message": "compressed request bodies are not accepted; send the body with no Content-Encoding",
    }
    identity = client.post(
        "/invocations", content=_split(dataset.head(1)), headers={**JSON_TYPE, "content-encoding": "identity"}
    )
    assert identity.status_code == 200


@pytest.mark.parametrize("where", ["params array", "params object", "inputs", "a cell"])
def test_json_nested_past_the_limit_is_a_400_not_a_500(
    client: TestClient, dataset: pd.DataFrame, where: str
) -> None:
    """Nested `params` once reached msgspec (a RecursionError, answered 500); every body MLflow's
    parsers would read (here: numeric strings, which the fast path leaves to them) is now held to
    MAX_JSON_DEPTH, wherever the nesting is."""
    row = dataset.head(1)
    deep = "[" * 5000 + "]" * 5000
    if where == "params array":
        body = _split(row.astype(str), params={"a": "__deep__"})  # strings: MLflow's path
    elif where == "params object":
        body = _split(row.astype(str), params="__deep__")
        deep = '{"a": ' * 100 + "1" + "}" * 100
    elif where == "inputs":
        body = json.dumps({"inputs": "__deep__"})
        deep = "[" * 65 + "]" * 65
    else:
        body = _split(row.assign(feature_2="__deep__"))
        deep = "[" * 70 + "1" + "]" * 70
    if isinstance(body, bytes):
        body = body.decode()
    body = body.replace('"__deep__"', deep).encode()
    response = client.post("/invocations", content=body, headers=JSON_TYPE)
    assert response.status_code == 400
    assert _body_of(response) == {
        "error_code": "BAD_REQUEST",
        "message": "Invalid input. JSON nested more than 64 levels deep is not accepted.",
    }


def test_params_of_a_body_the_fast_path_takes_are_skipped_unread(
    codec: InvocationCodec, client: TestClient, dataset: pd.DataFrame
) -> None:
    """A model without a params schema ignores `params`; the fast path keeps them as raw bytes,
    never as Python objects, so their size and depth cost the event loop no more than a scan."""
    params = {"note": {f"k{i}": [[[i]]] for i in range(2000)}}
    body = _split(dataset.head(1), params=params)
    assert isinstance(codec._fast._decode(body).params, msgspec.Raw)  # msgspec's reader of the layouts
    assert client.post("/invocations", content=body, headers=JSON_TYPE).status_code == 200


def test_a_record_of_700k_unknown_keys_is_refused_by_the_key_limit(
    client: TestClient, dataset: pd.DataFrame
) -> None:
    """MLflow would build (and then drop) 700,000 columns; the key limit stops it first."""
    record = {**dataset.head(1).to_dict("records")[0], **{f"k{i}": 0 for i in range(700_000)}}
    response = client.post(
        "/invocations", content=json.dumps({"dataframe_records": [record, {"x": "y"}]}), headers=JSON_TYPE
    )
    assert response.status_code == 422
    assert _body_of(response) == {
        "error_code": "INVALID_INPUT",
        "message": "a JSON object in the request holds 700030 keys; at most 1024 per object",
        "details": [{"message": "a JSON object in the request holds 700030 keys; at most 1024 per object"}],
    }


def test_extra_columns_within_the_limit_are_still_dropped_as_mlflow_drops_them(
    client: TestClient, dataset: pd.DataFrame
) -> None:
    extra = {f"extra_{i}": "x" for i in range(1024 - 30)}
    records = [{**record, **extra} for record in dataset.head(2).to_dict("records")]
    response = client.post(
        "/invocations", content=json.dumps({"dataframe_records": records}), headers=JSON_TYPE
    )
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 2


@pytest.mark.parametrize("layout", ["split columns", "split row", "csv", "parquet"])
def test_more_than_1024_columns_are_refused_in_every_format(
    client: TestClient, dataset: pd.DataFrame, layout: str
) -> None:
    extra = pd.DataFrame(1.0, index=range(2), columns=[f"extra_{i}" for i in range(1000)])
    frame = pd.concat([dataset.head(2).reset_index(drop=True), extra], axis=1)  # 1030 columns
    held = "1030"
    if layout == "split columns":
        content, headers = _split(frame.astype(str)), JSON_TYPE
    elif layout == "split row":
        split = {"columns": list(dataset.columns), "data": [[1.0] * 30, ["1"] * 1030]}
        content, headers = json.dumps({"dataframe_split": split}).encode(), JSON_TYPE
    elif layout == "csv":
        content, headers, held = (
            frame.to_csv(index=False).encode(),
            {"content-type": "text/csv"},
            "more than 1024",
        )
    else:
        buffer = io.BytesIO()
        frame.to_parquet(buffer)
        content, headers = buffer.getvalue(), PARQUET_TYPE
    response = client.post("/invocations", content=content, headers=headers)
    assert response.status_code == 422
    assert response.json()["message"] == f"the request holds {held} columns; at most 1024 per request"


def test_a_csv_of_one_row_and_millions_of_columns_is_refused_before_pandas_reads_it(
    client: TestClient,
) -> None:
    body = b",".join(b"c" for _ in range(2_000_000)) + b"\n" + b",".join(b"1" for _ in range(2_000_000))
    response = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
    assert response.status_code == 422
    assert response.json()["message"] == "the request holds more than 1024 columns; at most 1024 per request"


def _parquet_bytes(table: pa.Table, **options: object) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **options)
    return buffer.getvalue()


def test_the_reviews_parquet_bomb_is_refused_from_its_footer(client: TestClient) -> None:
    """20 million constant rows in ~100 KB of zstd: refused from the footer's row counts. The row
    group's pages are cut off here, so decoding (as MLflow's parser did first) fails with a 400:
    the 422 shows that nothing was decoded."""
    rows = 20_000_000
    table = pa.table({"feature_1": pa.array(np.zeros(rows))})
    body = _parquet_bytes(table, compression="zstd", row_group_size=rows)
    footer_length = int.from_bytes(body[-8:-4], "little")
    footer_start = len(body) - 8 - footer_length
    first_page = pq.ParquetFile(io.BytesIO(body)).metadata.row_group(0).column(0).dictionary_page_offset
    pages_zeroed = body[:first_page] + bytes(footer_start - first_page) + body[footer_start:]
    for content in (body, pages_zeroed):
        response = client.post("/invocations", content=content, headers=PARQUET_TYPE)
        assert response.status_code == 422
        assert _body_of(response) == {
            "error_code": "INVALID_INPUT",
            "message": "the request holds 20000000 rows; at most 50 per request",
            "details": [{"message": "the request holds 20000000 rows; at most 50 per request"}],
        }


def test_a_parquet_page_that_decompresses_past_the_limit_is_refused(
    client: TestClient, dataset: pd.DataFrame
) -> None:
    """10 KB of zstd holding one 300 MB string (650 MB to decode): measured from its page header."""
    table = pa.Table.from_pandas(dataset.head(1), preserve_index=False).append_column(
        "note", pa.array(["x" * 300_000_000], type=pa.large_string())
    )
    body = _parquet_bytes(table, compression="zstd", compression_level=19, use_dictionary=False)
    assert len(body) < 100_000
    response = client.post("/invocations", content=body, headers=PARQUET_TYPE)
    assert response.status_code == 422
    assert response.json()["message"] == "the Parquet body decodes to more than 32 MiB"


def test_a_dictionary_encoded_string_column_is_measured_at_its_decoded_size(
    client: TestClient, dataset: pd.DataFrame
) -> None:
    """Fifty rows of one 2 MB string: a few KB as a dictionary, 100 MB in pandas. The column is
    one MLflow would drop, so before the limit this was a 200 after decoding it all."""
    note = pa.DictionaryArray.from_arrays(pa.array(np.zeros(50, dtype=np.int32)), pa.array(["x" * 2_000_000]))
    table = pa.Table.from_pandas(dataset.head(50), preserve_index=False).append_column("note", note)
    body = _parquet_bytes(table, compression="zstd", store_schema=False)
    assert len(body) < 300_000
    response = client.post("/invocations", content=body, headers=PARQUET_TYPE)
    assert response.status_code == 422
    assert response.json()["message"] == "the Parquet body decodes to more than 32 MiB"
    small = pa.DictionaryArray.from_arrays(pa.array(np.zeros(50, dtype=np.int32)), pa.array(["a note"]))
    table = pa.Table.from_pandas(dataset.head(50), preserve_index=False).append_column("note", small)
    fine = client.post(
        "/invocations", content=_parquet_bytes(table, store_schema=False), headers=PARQUET_TYPE
    )
    assert fine.status_code == 200
