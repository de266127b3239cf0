"""This server against MLServer's MLflow runtime (`mlserver` + `mlserver-mlflow`, in a venv of
their own: `make mlserver`) on the same model, over a corpus of Open Inference Protocol REST
requests. Where MLServer answers 200, this server answers 200 with the same outputs (names,
datatypes, shapes, values; only those `outputs` asks for, which MLServer ignores). Where MLServer
refuses a client's mistake (with a 4xx, or with the 5xx it gives some of them), this server
answers a 4xx in the protocol's error shape. The layouts this server takes and MLServer refuses
are listed apart, each one checked both ways."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest

from registry_scripts.dataset import load_frame
from registry_scripts.processes import ServerProcess, mlserver_process

NAME = "breast-cancer-classifier"
FRAME = load_frame()[0]
NAMES = list(FRAME.columns)


@pytest.fixture(scope="module")
def mlserver(base_env: dict[str, str], champion_uri: str, tmp_path_factory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("mlserver")
    mlflow.set_tracking_uri(base_env["MLFLOW_TRACKING_URI"])
    model_dir = Path(mlflow.artifacts.download_artifacts(champion_uri, dst_path=str(folder / "model")))
    server, _ = mlserver_process(base_env, model_dir, NAME, folder / "repository", folder / "mlserver.log")
    with server:
        yield server


def _columns(frame: pd.DataFrame, datatype: str = "FP64", *, flat: bool = False) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "datatype": datatype,
            "shape": [len(frame)] if flat else [len(frame), 1],
            "data": frame[name].tolist() if flat else [[v] for v in frame[name].tolist()],
        }
        for name in frame.columns
    ]


def _with(inputs: list[dict[str, Any]], position: int, **changes: Any) -> list[dict[str, Any]]:
    copied = [dict(tensor) for tensor in inputs]
    copied[position].update(changes)
    return copied


FIVE = FRAME.iloc[:5]

VALID: dict[str, dict[str, Any]] = {
    "one row": {"inputs": _columns(FRAME.iloc[:1])},
    "a hundred rows": {"inputs": _columns(FRAME.iloc[:100])},
    "the whole dataset": {"inputs": _columns(FRAME)},
    "flat [N] columns": {"inputs": _columns(FIVE, flat=True)},
    "FP32": {"inputs": _columns(FIVE, "FP32")},
    "columns in another order": {"inputs": list(reversed(_columns(FIVE)))},
    "with an id and parameters": {"id": "req-1", "parameters": {"note": "x"}, "inputs": _columns(FIVE)},
    "selected outputs": {
        "inputs": _columns(FIVE),
        "outputs": [{"name": "label"}, {"name": "probability_benign"}],
    },
    "integers in FP64 data": {"inputs": _columns(FIVE.round())},
}

INVALID: dict[str, Any] = {
    "not JSON": b"{not json",
    "no inputs field": {"id": "x"},
    "inputs not a list": {"inputs": 5},
    "a feature missing": {"inputs": _columns(FIVE)[1:]},
    "a string among the numbers": {"inputs": _with(_columns(FIVE), 3, data=[["x"]] * 5)},
    "fewer values than the shape": {"inputs": _with(_columns(FIVE), 2, data=[[1.0]] * 4)},
    "an input without a datatype": {
        "inputs": [{k: v for k, v in t.items() if k != "datatype"} for t in _columns(FIVE)]
    },
    "an input without a shape": {
        "inputs": [{k: v for k, v in t.items() if k != "shape"} for t in _columns(FIVE)]
    },
    "columns of different lengths": {
        "inputs": _with(_columns(FIVE), 4, shape=[4, 1], data=[[1.0]] * 4),
    },
}

# What this server takes and MLServer's MLflow runtime refuses (with a 500: MLflow's schema
# enforcement raises on it): one [N, 30] tensor in signature order, the layout of tabular
# clients that send a matrix.
ONLY_HERE: dict[str, dict[str, Any]] = {
    "one [N, 30] matrix": {
        "inputs": [
            {"name": "input-0", "datatype": "FP64", "shape": [5, 30], "data": FIVE.to_numpy().tolist()}
        ]
    },
}


def _post(server: ServerProcess, body: Any) -> httpx.Response:
    path = f"{server.url}/v2/models/{NAME}/infer"
    if isinstance(body, bytes):
        return httpx.post(path, content=body, headers={"Content-Type": "application/json"}, timeout=60)
    return httpx.post(path, json=body, timeout=60)


def _outputs(response: httpx.Response) -> list[tuple[str, str, list[int], list[Any]]]:
    return [(o["name"], o["datatype"], o["shape"], o["data"]) for o in response.json()["outputs"]]


@pytest.mark.parametrize("case", list(VALID), ids=list(VALID))
def test_valid_requests_get_mlservers_outputs(
    api_server: ServerProcess, mlserver: ServerProcess, case: str
) -> None:
    theirs = _post(mlserver, VALID[case])
    assert theirs.status_code == 200, theirs.text
    ours = _post(api_server, VALID[case])
    assert ours.status_code == 200, ours.text
    expected = _outputs(theirs)
    requested = VALID[case].get("outputs")
    if requested is not None:  # MLServer sends every output whatever `outputs` asks for; the protocol selects
        by_name = {output[0]: output for output in expected}
        expected = [by_name[output["name"]] for output in requested]
    assert _outputs(ours) == expected
    assert ours.json()["model_name"] == theirs.json()["model_name"] == NAME
    if "id" in VALID[case]:
        assert ours.json()["id"] == theirs.json()["id"] == VALID[case]["id"]


@pytest.mark.parametrize("case", list(INVALID), ids=list(INVALID))
def test_client_mistakes_get_a_4xx_where_mlserver_refuses_them(
    api_server: ServerProcess, mlserver: ServerProcess, case: str
) -> None:
    theirs = _post(mlserver, INVALID[case])
    assert theirs.status_code >= 400, theirs.text
    ours = _post(api_server, INVALID[case])
    assert 400 <= ours.status_code < 500, ours.text
    assert set(ours.json()) == {"error"}


@pytest.mark.parametrize("case", list(ONLY_HERE), ids=list(ONLY_HERE))
def test_layouts_only_this_server_takes(
    api_server: ServerProcess, mlserver: ServerProcess, case: str
) -> None:
    assert _post(mlserver, ONLY_HERE[case]).status_code >= 400
    ours = _post(api_server, ONLY_HERE[case])
    assert ours.status_code == 200
    expected = _post(mlserver, {"inputs": _columns(FIVE)})
    assert _outputs(ours) == _outputs(expected)


def test_an_unknown_model_is_a_404_on_both(api_server: ServerProcess, mlserver: ServerProcess) -> None:
    body = json.dumps({"inputs": _columns(FIVE)})
    for server in (api_server, mlserver):
        response = httpx.post(f"{server.url}/v2/models/nope/infer", content=body, timeout=30)
        assert response.status_code == 404
