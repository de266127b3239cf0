"""The Open Inference Protocol over REST (/v2) and KServe V1 (/v1), in process: metadata, both
input layouts, datatypes, output selection, the binary extension, and errors in the protocol's
shape with the input and row named. Real clients (tritonclient) over a real server process are
`tests/e2e/test_open_inference_clients.py`."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from server.errors import InvalidInput
from server.live.loaded_model import LoadedModel

NAME = "breast-cancer-classifier"
INFER = f"/v2/models/{NAME}/infer"


def columns_request(frame: pd.DataFrame, datatype: str = "FP64", *, flat: bool = False, **extra: Any) -> dict:
    inputs = []
    for name in frame.columns:
        values = frame[name].tolist()
        inputs.append(
            {
                "name": name,
                "datatype": datatype,
                "shape": [len(frame)] if flat else [len(frame), 1],
                "data": values if flat else [[v] for v in values],
            }
        )
    return {"inputs": inputs, **extra}


def matrix_request(frame: pd.DataFrame, datatype: str = "FP64", *, nested: bool = True) -> dict:
    data = frame.to_numpy().tolist()
    return {
        "inputs": [
            {
                "name": "input-0",
                "datatype": datatype,
                "shape": [len(frame), frame.shape[1]],
                "data": data if nested else [v for row in data for v in row],
            }
        ]
    }


def invocations(client: TestClient, frame: pd.DataFrame) -> list[dict[str, Any]]:
    body = {"dataframe_split": {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}}
    response = client.post("/invocations", json=body)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def outputs_by_name(body: dict[str, Any]) -> dict[str, list[Any]]:
    return {output["name"]: output["data"] for output in body["outputs"]}


def assert_same_as_invocations(body: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    outputs = outputs_by_name(body)
    assert outputs["prediction"] == [row["prediction"] for row in expected]
    assert outputs["label"] == [row["label"] for row in expected]
    for name in ("probability_malignant", "probability_benign"):
        assert outputs[name] == [row[name] for row in expected]


def test_server_metadata_and_health(client: TestClient) -> None:
    metadata = client.get("/v2").json()
    assert metadata["name"] == "registry-serve"
    assert metadata["extensions"] == ["binary_tensor_data"]
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get(f"/v2/models/{NAME}/ready").json() == {"name": NAME, "ready": True}


def test_model_metadata_comes_from_the_signature(client: TestClient, loaded_champion: LoadedModel) -> None:
    body = client.get(f"/v2/models/{NAME}").json()
    version = loaded_champion.source.version
    assert body["name"] == NAME
    assert body["versions"] == [version]
    assert body["platform"] == "mlflow"
    assert [i["name"] for i in body["inputs"]] == list(loaded_champion.feature_names or ())
    assert {(i["datatype"], tuple(i["shape"])) for i in body["inputs"]} == {("FP64", (-1, 1))}
    assert body["outputs"] == [
        {"name": "prediction", "datatype": "INT64", "shape": [-1, 1]},
        {"name": "label", "datatype": "BYTES", "shape": [-1, 1]},
        {"name": "probability_malignant", "datatype": "FP64", "shape": [-1, 1]},
        {"name": "probability_benign", "datatype": "FP64", "shape": [-1, 1]},
    ]
    assert client.get(f"/v2/models/{NAME}/versions/{version}").json() == body


@pytest.mark.parametrize(
    "make",
    [
        lambda frame: columns_request(frame),
        lambda frame: columns_request(frame, flat=True),
        lambda frame: matrix_request(frame),
        lambda frame: matrix_request(frame, nested=False),
    ],
    ids=["columns [N,1]", "columns [N]", "matrix nested", "matrix flat"],
)
def test_both_layouts_answer_as_invocations(client: TestClient, dataset: pd.DataFrame, make: Any) -> None:
    frame = dataset.iloc[:40]
    response = client.post(INFER, json=make(frame))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == NAME
    assert [(o["name"], o["datatype"], o["shape"]) for o in body["outputs"]] == [
        ("prediction", "INT64", [40, 1]),
        ("label", "BYTES", [40, 1]),
        ("probability_malignant", "FP64", [40, 1]),
        ("probability_benign", "FP64", [40, 1]),
    ]
    assert_same_as_invocations(body, invocations(client, frame))


def test_fp32_values_are_scored_at_their_precision(client: TestClient, dataset: pd.DataFrame) -> None:
    frame = dataset.iloc[:30]
    rounded = frame.astype(np.float32).astype(np.float64)
    response = client.post(INFER, json=columns_request(frame, "FP32"))
    assert response.status_code == 200, response.text
    assert_same_as_invocations(response.json(), invocations(client, rounded))


def test_integer_datatypes_take_integers(client: TestClient, dataset: pd.DataFrame) -> None:
    frame = dataset.iloc[:5].round()
    response = client.post(INFER, json=matrix_request(frame, "INT64"))
    assert response.status_code == 200, response.text
    assert_same_as_invocations(response.json(), invocations(client, frame))


def test_outputs_id_and_parameters(client: TestClient, dataset: pd.DataFrame) -> None:
    request = columns_request(
        dataset.iloc[:2],
        id="my-request-7",
        parameters={"content_type": "pd", "anything": [1, 2]},
        outputs=[{"name": "label"}, {"name": "probability_benign", "parameters": {}}],
    )
    body = client.post(INFER, json=request).json()
    assert body["id"] == "my-request-7"
    assert [o["name"] for o in body["outputs"]] == ["label", "probability_benign"]


def test_without_an_id_the_request_id_is_the_answer_id(client: TestClient, dataset: pd.DataFrame) -> None:
    response = client.post(INFER, json=matrix_request(dataset.iloc[:1]), headers={"X-Request-ID": "abc-123"})
    assert response.json()["id"] == "abc-123"


def _binary_request(frame: pd.DataFrame, dtype: str, datatype: str, *, binary_out: bool) -> tuple[bytes, int]:
    raw = np.ascontiguousarray(frame.to_numpy(dtype=dtype)).tobytes()
    header = {
        "inputs": [
            {
                "name": "input-0",
                "datatype": datatype,
                "shape": list(frame.shape),
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "parameters": {"binary_data_output": binary_out},
    }
    encoded = json.dumps(header).encode()
    return encoded + raw, len(encoded)


def _read_binary(response: Any) -> dict[str, np.ndarray]:
    length = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:length])
    rest = response.content[length:]
    out = {}
    for output in header["outputs"]:
        size = output["parameters"]["binary_data_size"]
        chunk, rest = rest[:size], rest[size:]
        if output["datatype"] == "BYTES":
            items = []
            while chunk:
                n = int.from_bytes(chunk[:4], "little")
                items.append(chunk[4 : 4 + n].decode())
                chunk = chunk[4 + n :]
            out[output["name"]] = np.array(items, dtype=object)
        else:
            out[output["name"]] = np.frombuffer(
                chunk, dtype={"INT64": "<i8", "FP64": "<f8"}[output["datatype"]]
            )
    assert rest == b""
    return out


@pytest.mark.parametrize(("dtype", "datatype"), [("<f8", "FP64"), ("<f4", "FP32")])
def test_binary_tensors_in_and_out(
    client: TestClient, dataset: pd.DataFrame, dtype: str, datatype: str
) -> None:
    frame = dataset.iloc[:25]
    body, length = _binary_request(frame, dtype, datatype, binary_out=True)
    response = client.post(
        INFER,
        content=body,
        headers={"Inference-Header-Content-Length": str(length), "Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    outputs = _read_binary(response)
    expected = invocations(client, frame.astype(dtype).astype(np.float64))
    assert outputs["prediction"].tolist() == [row["prediction"] for row in expected]
    assert outputs["label"].tolist() == [row["label"] for row in expected]
    assert outputs["probability_benign"].tolist() == [row["probability_benign"] for row in expected]


def test_binary_inputs_with_json_outputs(client: TestClient, dataset: pd.DataFrame) -> None:
    body, length = _binary_request(dataset.iloc[:3], "<f8", "FP64", binary_out=False)
    response = client.post(INFER, content=body, headers={"Inference-Header-Content-Length": str(length)})
    assert response.headers["content-type"] == "application/json"
    assert_same_as_invocations(response.json(), invocations(client, dataset.iloc[:3]))


def _error(client: TestClient, body: Any, path: str = INFER, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    if isinstance(body, bytes):
        response = client.post(path, content=body, **kwargs)
    else:
        response = client.post(path, json=body, **kwargs)
    return response.status_code, response.json()


def _one_column_changed(dataset: pd.DataFrame, name: str, values: list[Any], datatype: str = "FP64") -> dict:
    request = columns_request(dataset.iloc[:3], flat=True)
    for tensor in request["inputs"]:
        if tensor["name"] == name:
            tensor["data"] = values
            tensor["datatype"] = datatype
    return request


def test_value_errors_name_the_input_and_row(client: TestClient, dataset: pd.DataFrame) -> None:
    cases = [
        (
            _one_column_changed(dataset, "feature_4", [1.0, 2.0, 1e101]),
            "input feature_4, row 2: must lie between -1e+100 and 1e+100",
        ),
        (
            _one_column_changed(dataset, "feature_4", [1.0, 1e39, 2.0], "FP32"),
            "input feature_4, row 1: does not fit FP32",
        ),
        (
            _one_column_changed(dataset, "feature_4", [1.0, 1.5, 2.0], "INT64"),
            "input feature_4, row 1: must be an integer INT64 holds",
        ),
        (
            _one_column_changed(dataset, "feature_4", [1.0, 2.0, 300.0], "INT8"),
            "input feature_4, row 2: must be an integer INT8 holds",
        ),
        (
            _one_column_changed(dataset, "feature_4", [1.0, 2.0, 3.0], "BYTES"),
            "input feature_4: datatype BYTES cannot carry a feature; send FP64, FP32 or an integer type",
        ),
    ]
    for request, message in cases:
        assert _error(client, request) == (422, {"error": message})


def test_shape_errors(client: TestClient, dataset: pd.DataFrame) -> None:
    request = columns_request(dataset.iloc[:3], flat=True)
    del request["inputs"][5]
    assert _error(client, request) == (422, {"error": "missing input: feature_6"})
    request = columns_request(dataset.iloc[:3], flat=True)
    request["inputs"][2]["data"] = [1.0, 2.0]
    assert _error(client, request) == (
        422,
        {"error": "input at position 2: shape [3] needs 3 values, data holds 2"},
    )
    request = columns_request(dataset.iloc[:3], flat=True)
    request["inputs"][2]["shape"] = [2]
    request["inputs"][2]["data"] = [1.0, 2.0]
    assert _error(client, request) == (
        422,
        {"error": "input feature_3: holds 2 rows where the inputs before it hold 3"},
    )
    request = columns_request(dataset.iloc[:3], flat=True)
    request["inputs"][7]["name"] = "x" * 5000
    status, body = _error(client, request)
    assert status == 422
    assert body == {
        "error": "input at position 7 is not a feature of this model: with one input "
        "per feature, every input is named by the signature"
    }
    request = matrix_request(dataset.iloc[:3])
    request["inputs"][0]["shape"] = [3, 10, 3]
    assert _error(client, request) == (
        422,
        {
            "error": "input at position 0: a single input must have shape [N, 30] (one "
            "column per feature, in signature order), not [3, 10, 3]"
        },
    )


def test_body_errors(client: TestClient, dataset: pd.DataFrame) -> None:
    request = columns_request(dataset.iloc[:2])
    request["inputs"][3]["data"][1] = [True]
    assert _error(client, request) == (422, {"error": "input at position 3, data[1]: values must be numbers"})
    request["inputs"][3]["data"][1] = ["secret text"]
    status, body = _error(client, request)
    assert status == 422
    assert "secret" not in body["error"]
    assert _error(client, b"{not json") == (400, {"error": "the request body is not valid JSON"})
    assert _error(client, {"inputs": 5}) == (
        422,
        {
            "error": "the request does not follow the Open Inference Protocol: "
            "Expected `array`, got `int` - at `$.inputs`"
        },
    )
    assert _error(client, {"inputs": []}) == (422, {"error": "the request holds no inputs"})
    request = matrix_request(dataset.iloc[:2])
    request["inputs"][0]["datatype"] = "zz" * 100
    assert _error(client, request) == (
        422,
        {
            "error": "input at position 0: unknown datatype; the protocol's numeric types are UINT8, "
            "UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64"
        },
    )
    request = matrix_request(dataset.iloc[:2])
    request["outputs"] = [{"name": "prediction"}, {"name": "nope"}]
    assert _error(client, request) == (
        422,
        {
            "error": "output at position 1 is not one of this model's outputs (prediction, "
            "label, probability_malignant, probability_benign)"
        },
    )
    status, body = _error(client, matrix_request(dataset.iloc[:51]))
    assert (status, body) == (422, {"error": "the request holds 51 rows; at most 50 per request"})
    status, body = _error(client, b"{}", headers={"Content-Type": "text/csv"})
    assert status == 415


def test_binary_errors(client: TestClient, dataset: pd.DataFrame) -> None:
    body, length = _binary_request(dataset.iloc[:2], "<f8", "FP64", binary_out=False)
    assert _error(client, body, headers={"Inference-Header-Content-Length": str(len(body) + 1)}) == (
        400,
        {
            "error": f"the inference-header-content-length header must be the JSON "
            f"header's length in bytes, at most the body's {len(body)}"
        },
    )
    assert _error(client, body + b"\0", headers={"Inference-Header-Content-Length": str(length)}) == (
        422,
        {"error": "the body holds 1 bytes after the inputs' binary_data_size say it ends"},
    )
    assert _error(client, body[:-4], headers={"Inference-Header-Content-Length": str(length)}) == (
        422,
        {"error": "input at position 0: binary_data_size reaches past the end of the body"},
    )


def test_unknown_models_and_versions_are_404s_in_the_protocol_shape(
    client: TestClient, loaded_champion: LoadedModel
) -> None:
    version = loaded_champion.source.version
    assert _error(client, {}, path="/v2/models/other/infer") == (
        404,
        {"error": f"no model of that name is served here; this server serves {NAME}"},
    )
    assert _error(client, {}, path=f"/v2/models/{NAME}/versions/999999/infer") == (
        404,
        {"error": f"no such version of this model is served here; versions served: {version}"},
    )
    assert client.get("/v2/models/other").status_code == 404
    assert client.get("/v2/nothing/here").json() == {"error": "no endpoint at this path"}


def test_version_path_infers(client: TestClient, dataset: pd.DataFrame, loaded_champion: LoadedModel) -> None:
    version = loaded_champion.source.version
    response = client.post(
        f"/v2/models/{NAME}/versions/{version}/infer", json=matrix_request(dataset.iloc[:3])
    )
    assert response.status_code == 200
    assert response.json()["model_version"] == version
    assert response.headers["x-model-version"] == version


def test_v1_predict_takes_lists_and_objects(client: TestClient, dataset: pd.DataFrame) -> None:
    frame = dataset.iloc[:10]
    expected = [row["prediction"] for row in invocations(client, frame)]
    for key, instances in (
        ("instances", frame.to_numpy().tolist()),
        ("inputs", frame.to_numpy().tolist()),
        ("instances", frame.to_dict("records")),
    ):
        response = client.post(f"/v1/models/{NAME}:predict", json={key: instances})
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": expected}
    assert client.get(f"/v1/models/{NAME}").json() == {"name": NAME, "ready": True}


def test_v1_errors(client: TestClient, dataset: pd.DataFrame) -> None:
    path = f"/v1/models/{NAME}:predict"
    rows = dataset.iloc[:2].to_numpy().tolist()
    rows[1][4] = True
    assert _error(client, {"instances": rows}, path) == (422, {"error": "instances[1][4] must be a number"})
    assert _error(client, {"instances": [rows[0][:5]]}, path) == (
        422,
        {"error": "instances[0] holds 5 values; the model reads 30"},
    )
    records = dataset.iloc[:2].to_dict("records")
    del records[1]["feature_2"]
    assert _error(client, {"instances": records}, path) == (
        422,
        {"error": "record 1, feature_2: is required"},
    )
    assert _error(client, {"instances": [1, 2]}, path)[0] == 422
    assert _error(client, {}, "/v1/models/other:predict") == (
        404,
        {"error": f"no model of that name is served here; this server serves {NAME}"},
    )


def test_inference_is_counted_under_the_route_template(client: TestClient, dataset: pd.DataFrame) -> None:
    client.post(INFER, json=matrix_request(dataset.iloc[:1]))
    client.post("/v2/models/some-other-name/infer", json={})
    text = client.get("/metrics").text
    series = 'prediction_requests_total{endpoint="/v2/models/{name}/infer",protocol="http",variant="champion"'
    assert series in text
    assert "some-other-name" not in text


@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        ("UINT64", 2.0**64),
        ("INT64", 2.0**63),
        ("INT64", -(2.0**63) - 4096),
        ("UINT8", 256.0),
        ("INT8", -129.0),
    ],
)
def test_integer_types_refuse_values_past_their_range(
    client: TestClient, dataset: pd.DataFrame, datatype: str, value: float
) -> None:
    request = _one_column_changed(dataset, "feature_4", [1.0, 2.0, value], datatype)
    assert _error(client, request) == (
        422,
        {"error": f"input feature_4, row 2: must be an integer {datatype} holds"},
    )


def test_the_status_route_does_not_answer_the_predict_path(client: TestClient) -> None:
    response = client.get(f"/v1/models/{NAME}:predict")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json() == {"error": "method not allowed here; allowed: POST"}


def test_a_grpc_method_path_over_http_is_no_traffic(client: TestClient) -> None:
    response = client.post("/inference.GRPCInferenceService/ModelInfer", content=b"\x00")
    assert response.status_code == 404
    assert (
        'prediction_requests_total{endpoint="/inference.GRPCInferenceService/ModelInfer",protocol="http"'
        not in (client.get("/metrics").text)
    )


def test_integer_contents_keep_their_exact_values() -> None:
    """gRPC's typed int64 contents arrive as Python ints: 2**63 - 1 is an INT64, though a double
    would round it to 2**63."""
    from server.codecs.tensors import InputTensor, TensorLayout

    layout = TensorLayout([f"f{i}" for i in range(3)])
    rows = layout.matrix(InputTensor("x", "INT64", (1, 3), [2**63 - 1, -(2**63), 7]), 10)
    assert rows.tolist() == [[float(2**63 - 1), float(-(2**63)), 7.0]]
    unsigned = layout.matrix(InputTensor("x", "UINT64", (1, 3), [2**64 - 1, 0, 1]), 10)
    assert unsigned.tolist() == [[float(2**64 - 1), 0.0, 1.0]]
    with pytest.raises(InvalidInput) as refused:
        layout.matrix(InputTensor("x", "UINT64", (1, 3), [2**64, 0, 1]), 10)
    assert refused.value.message == "input at position 0, row 0: must be an integer UINT64 holds"


def test_fp16_values_are_scored_at_their_precision(client: TestClient, dataset: pd.DataFrame) -> None:
    """FP16 travels as raw bytes (JSON has no 16-bit numbers of its own); it is scored as sent."""
    frame = dataset.iloc[:10, :].clip(upper=60_000)  # FP16 holds up to 65,504
    body, length = _binary_request(frame, "<f2", "FP16", binary_out=False)
    response = client.post(INFER, content=body, headers={"Inference-Header-Content-Length": str(length)})
    assert response.status_code == 200, response.text
    assert_same_as_invocations(response.json(), invocations(client, frame.astype("<f2").astype(np.float64)))
