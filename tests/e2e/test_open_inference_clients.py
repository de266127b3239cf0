"""Real Open Inference Protocol clients against a real server process with GRPC_PORT set:
tritonclient's HTTP and gRPC clients get the same answers as /invocations for the whole dataset,
in both input layouts, FP64 and FP32, JSON and binary tensors; gRPC health checking and
reflection answer; gRPC failures carry the protocol's status codes and our messages; gRPC calls
are counted under protocol="grpc"."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tritonclient.utils import InferenceServerException

from registry_scripts.dataset import load_frame
from registry_scripts.processes import ServerProcess, api_process, free_port
from tests.ops.tools import ROOT
from tests.server.metrics_text import counted

NAME = "breast-cancer-classifier"
PROBABILITIES = ("probability_malignant", "probability_benign")


@pytest.fixture(scope="module")
def grpc_server(
    base_env: dict[str, str], champion_uri: str, tmp_path_factory
) -> Iterator[tuple[ServerProcess, int]]:
    log = tmp_path_factory.mktemp("oip") / "api.log"
    port = free_port()
    with api_process(
        base_env, log, MODEL_URI=champion_uri, MAX_BATCH_SIZE="1000", GRPC_PORT=str(port)
    ) as server:
        yield server, port


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return load_frame()[0]


def _expected(server: ServerProcess, frame: pd.DataFrame) -> dict[str, list[Any]]:
    body = {"dataframe_split": {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}}
    rows = httpx.post(f"{server.url}/invocations", json=body, timeout=30).json()["predictions"]
    return {name: [row[name] for row in rows] for name in ("prediction", "label", *PROBABILITIES)}


def _inputs(module: Any, frame: pd.DataFrame, dtype: str, layout: str, binary: bool) -> list[Any]:
    datatype = {"float64": "FP64", "float32": "FP32"}[dtype]
    values = frame.to_numpy(dtype=dtype)
    kwargs = {"binary_data": binary} if module is triton_http else {}
    if layout == "matrix":
        tensor = module.InferInput("input-0", list(values.shape), datatype)
        tensor.set_data_from_numpy(values, **kwargs)
        return [tensor]
    tensors = []
    for position, name in enumerate(frame.columns):
        column = np.ascontiguousarray(values[:, position : position + 1])
        tensor = module.InferInput(name, list(column.shape), datatype)
        tensor.set_data_from_numpy(column, **kwargs)
        tensors.append(tensor)
    return tensors


def _answers(result: Any) -> dict[str, list[Any]]:
    out = {name: result.as_numpy(name).reshape(-1).tolist() for name in ("prediction", *PROBABILITIES)}
    out["label"] = [
        v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").reshape(-1).tolist()
    ]
    return out


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("layout", ["columns", "matrix"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_http_answers_as_invocations(
    grpc_server, frame, dtype: str, layout: str, binary: bool
) -> None:
    server, _ = grpc_server
    expected = _expected(server, frame.astype(dtype).astype("float64"))
    client = triton_http.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    outputs = [
        triton_http.InferRequestedOutput(n, binary_data=binary)
        for n in ("prediction", "label", *PROBABILITIES)
    ]
    result = client.infer(NAME, _inputs(triton_http, frame, dtype, layout, binary), outputs=outputs)
    assert _answers(result) == expected


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("layout", ["columns", "matrix"])
def test_tritonclient_grpc_answers_as_invocations(grpc_server, frame, dtype: str, layout: str) -> None:
    server, port = grpc_server
    expected = _expected(server, frame.astype(dtype).astype("float64"))
    client = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{port}")
    result = client.infer(NAME, _inputs(triton_grpc, frame, dtype, layout, binary=True))
    assert _answers(result) == expected


def test_status_and_metadata_over_both_transports(grpc_server, champion_version: str) -> None:
    server, port = grpc_server
    http_client = triton_http.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    grpc_client = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{port}")
    for client in (http_client, grpc_client):
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(NAME)
        assert client.is_model_ready(NAME, champion_version)
    metadata = http_client.get_model_metadata(NAME)
    grpc_metadata = grpc_client.get_model_metadata(NAME, as_json=True)
    assert metadata["versions"] == grpc_metadata["versions"] == [champion_version]
    assert [i["name"] for i in metadata["inputs"]] == [i["name"] for i in grpc_metadata["inputs"]]
    assert [o["name"] for o in grpc_metadata["outputs"]] == ["prediction", "label", *PROBABILITIES]
    assert grpc_client.get_server_metadata(as_json=True)["extensions"] == ["binary_tensor_data"]


def test_grpc_errors_carry_status_codes_and_our_messages(grpc_server, frame) -> None:
    _, port = grpc_server
    client = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{port}")
    inputs = _inputs(triton_grpc, frame.iloc[:3], "float64", "matrix", binary=True)
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("another-model", inputs)
    assert unknown.value.status() == "StatusCode.NOT_FOUND"
    assert unknown.value.message() == f"no model of that name is served here; this server serves {NAME}"
    bad = frame.iloc[:3].to_numpy().copy()
    bad[2, 4] = np.inf
    tensor = triton_grpc.InferInput("input-0", list(bad.shape), "FP64")
    tensor.set_data_from_numpy(bad)
    with pytest.raises(InferenceServerException) as invalid:
        client.infer(NAME, [tensor])
    assert invalid.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert invalid.value.message() == "input at position 0, row 2: must be a finite number"
    with pytest.raises(InferenceServerException) as version:
        client.is_model_ready(NAME, "999999")
    assert version.value.status() == "StatusCode.NOT_FOUND"
    http_client = triton_http.InferenceServerClient(url=f"127.0.0.1:{grpc_server[0].port}")
    assert not http_client.is_model_ready(NAME, "999999")


def test_grpc_health_and_reflection(grpc_server) -> None:
    _, port = grpc_server
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        (listing,) = list(reflection.ServerReflectionInfo(requests, timeout=10))
        names = {s.name for s in listing.list_services_response.service}
        assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names
        requests = iter(
            [reflection_pb2.ServerReflectionRequest(file_containing_symbol="inference.ModelInferRequest")]
        )
        (described,) = list(reflection.ServerReflectionInfo(requests, timeout=10))
        assert described.file_descriptor_response.file_descriptor_proto


def test_grpc_calls_are_counted_under_their_protocol(grpc_server, frame) -> None:
    server, port = grpc_server
    method = "/inference.GRPCInferenceService/ModelInfer"
    before = httpx.get(f"{server.url}/metrics").text
    client = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{port}")
    client.infer(NAME, _inputs(triton_grpc, frame.iloc[:2], "float64", "matrix", binary=True))
    with pytest.raises(InferenceServerException):
        client.infer("another-model", _inputs(triton_grpc, frame.iloc[:2], "float64", "matrix", binary=True))
    after = httpx.get(f"{server.url}/metrics").text
    labels = {"endpoint": method, "protocol": "grpc"}

    def delta(metric: str, **more: str) -> float:
        return counted(after, metric, **labels, **more) - counted(before, metric, **labels, **more)

    assert delta("prediction_requests_total", variant="champion") == 1
    assert delta("prediction_requests_total", variant="none") == 1  # refused before a variant was chosen
    assert delta("prediction_requests_failed_total", variant="none", reason="NOT_FOUND") == 1


def test_grpc_messages_over_max_body_bytes_are_refused(grpc_server) -> None:
    _, port = grpc_server
    client = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{port}")
    huge = np.zeros((50_000, 30))  # 12 MB of FP64, over the default MAX_BODY_BYTES (10 MiB)
    tensor = triton_grpc.InferInput("input-0", list(huge.shape), "FP64")
    tensor.set_data_from_numpy(huge)
    with pytest.raises(InferenceServerException) as refused:
        client.infer(NAME, [tensor])
    assert refused.value.status() == "StatusCode.RESOURCE_EXHAUSTED"


def test_grpc_calls_share_the_rate_limit(
    base_env: dict[str, str], champion_uri: str, tmp_path, frame
) -> None:
    port = free_port()
    settings = {"GRPC_PORT": str(port), "RATE_LIMIT_PER_SECOND": "0.01", "RATE_LIMIT_BURST": "2"}
    with api_process(base_env, tmp_path / "api.log", MODEL_URI=champion_uri, **settings):
        client = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{port}")
        inputs = _inputs(triton_grpc, frame.iloc[:1], "float64", "matrix", binary=True)
        client.infer(NAME, inputs)
        client.infer(NAME, inputs)
        with pytest.raises(InferenceServerException) as limited:
            client.infer(NAME, inputs)
        assert limited.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert limited.value.message() == "rate limit reached; retry in 100 s"


def test_the_kserve_runtime_serves_a_plain_mlflow_model_directory(
    base_env: dict[str, str], champion_uri: str, tmp_path, frame
) -> None:
    """Storage mode as k8s/kserve/cluster-serving-runtime.yaml configures the container: the
    runtime's own environment, with /mnt/models (what KServe's storage initializer fills) a
    downloaded model directory, {{.Name}} the InferenceService's name, no registry at all, and
    free ports in place of 8080 and 8081."""
    mlflow.set_tracking_uri(base_env["MLFLOW_TRACKING_URI"])
    model_dir = mlflow.artifacts.download_artifacts(champion_uri, dst_path=str(tmp_path / "mnt-models"))
    runtime = yaml.safe_load((ROOT / "k8s" / "kserve" / "cluster-serving-runtime.yaml").read_text())
    (container,) = runtime["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["MODEL_URI"] == "/mnt/models"
    grpc_port = free_port()
    env.update(MODEL_URI=model_dir, MODEL_NAME=env["MODEL_NAME"].replace("{{.Name}}", "bc-kserve"))
    env.update(API_HOST="127.0.0.1", GRPC_PORT=str(grpc_port), HOME=str(tmp_path))
    env.pop("API_PORT")  # api_process picks a free one
    without_registry = {k: v for k, v in base_env.items() if not k.startswith("MLFLOW_")}
    expected = _expected_from_dir(model_dir, frame.iloc[:20])
    with api_process(without_registry, tmp_path / "api.log", **env) as server:
        http_client = triton_http.InferenceServerClient(url=f"127.0.0.1:{server.port}")
        assert http_client.is_server_ready()
        assert http_client.get_model_metadata("bc-kserve")["platform"] == "mlflow"
        result = http_client.infer(
            "bc-kserve", _inputs(triton_http, frame.iloc[:20], "float64", "columns", True)
        )
        assert _answers(result) == expected
        grpc_client = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{grpc_port}")
        result = grpc_client.infer(
            "bc-kserve", _inputs(triton_grpc, frame.iloc[:20], "float64", "matrix", True)
        )
        assert _answers(result) == expected
        v1 = httpx.post(
            f"{server.url}/v1/models/bc-kserve:predict",
            json={"instances": frame.iloc[:20].to_numpy().tolist()},
        )
        assert v1.json() == {"predictions": expected["prediction"]}


def _expected_from_dir(model_dir: str, frame: pd.DataFrame) -> dict[str, list[Any]]:
    """What the model directory's own pyfunc predicts for `frame`, in the outputs' shape."""
    predicted = mlflow.pyfunc.load_model(model_dir).predict(frame)
    return {name: predicted[name].tolist() for name in ("prediction", "label", *PROBABILITIES)}


def _raw_infer(port: int, payload: bytes) -> grpc.RpcError:
    """ModelInfer with `payload` as the message's bytes; the error it ends with."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer", request_serializer=None, response_deserializer=None
        )
        with pytest.raises(grpc.RpcError) as failed:
            call(payload, timeout=30)
    return failed.value


def test_a_message_that_is_no_protobuf_is_the_clients_mistake(grpc_server) -> None:
    _, port = grpc_server
    error = _raw_infer(port, b"\xff\xff\xff\xff not a message")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "the message is not a valid ModelInferRequest"


def test_typed_contents_are_bounded_before_they_are_read(grpc_server) -> None:
    _, port = grpc_server
    count = (1 << 20) + 1
    request = triton_grpc.service_pb2.ModelInferRequest(model_name=NAME)
    tensor = request.inputs.add(name="input-0", datatype="FP64", shape=[count])
    tensor.contents.fp64_contents.extend(np.zeros(count).tolist())
    error = _raw_infer(port, request.SerializeToString())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "input at position 0: holds more than 1048576 values"
