"""The REST codec's two readers agree: simdjson's plain reader (bodies of PLAIN_MIN_BYTES and more)
takes a body only when the typed reader (msgspec) reads the same tensors from it, and leaves
everything else to it, so every refusal is the typed reader's, with its message."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from server.codecs import open_inference_rest as rest
from server.errors import ServingError

NAMES = [f"feature_{i}" for i in range(1, 31)]
ROWS = 40


def _request(**changes: Any) -> dict[str, Any]:
    inputs = [
        {"name": name, "datatype": "FP64", "shape": [ROWS, 1], "data": [[i + r / 7] for r in range(ROWS)]}
        for i, name in enumerate(NAMES)
    ]
    return {"inputs": inputs, **changes}


def _changed(position: int, **fields: Any) -> dict[str, Any]:
    request = _request()
    request["inputs"][position].update(fields)
    return request


def _typed(body: bytes) -> rest.RestRequest:
    """The typed reader alone (the plain one is skipped below its threshold)."""
    original = rest.PLAIN_MIN_BYTES
    rest.PLAIN_MIN_BYTES = 1 << 62
    try:
        return rest.decode_request(body, None)
    finally:
        rest.PLAIN_MIN_BYTES = original


BODIES: dict[str, bytes] = {
    "nested [N, 1]": json.dumps(_request()).encode(),
    "flat [N]": json.dumps(
        {"inputs": [{**t, "shape": [ROWS], "data": [v[0] for v in t["data"]]} for t in _request()["inputs"]]}
    ).encode(),
    "id, parameters and outputs": json.dumps(
        _request(
            id="r-1",
            parameters={"a": [1, [2]]},
            outputs=[{"name": "label", "parameters": {"binary_data": True}}],
        )
    ).encode(),
    "binary_data_output": json.dumps(_request(parameters={"binary_data_output": True})).encode(),
    "a string among the numbers": json.dumps(_changed(3, data=[[1.0]] * (ROWS - 1) + [["x"]])).encode(),
    "a boolean among the numbers": json.dumps(_changed(3, data=[[1.0]] * (ROWS - 1) + [[True]])).encode(),
    "nested two levels": json.dumps(_changed(3, data=[[[1.0]]] * ROWS)).encode(),
    "numbers beside rows": json.dumps(_changed(3, data=[[1.0]] * (ROWS - 1) + [2.0])).encode(),
    "a bracket in a name": json.dumps(_changed(3, name="feature_[4]")).encode(),
    "a repeated key": json.dumps(_request())[:-1].encode() + b', "inputs": []}',
    "an unknown key": json.dumps(_request(extra=1)).encode(),
    "input parameters": json.dumps(_changed(3, parameters={"content_type": "np"})).encode(),
    "a shape too long for the data": json.dumps(_changed(3, shape=[ROWS + 1, 1])).encode(),
    "a negative dimension": json.dumps(_changed(3, shape=[-ROWS, -1])).encode(),
    "an id that is a number": json.dumps(_request(id=5)).encode(),
    "outputs of strings": json.dumps(_request(outputs=["label"])).encode(),
    "a huge integer": json.dumps(_changed(3, data=[[10**30]] * ROWS)).encode(),
}


def _flat(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _same(plain: rest.RestRequest, typed: rest.RestRequest) -> None:
    assert plain.binary_outputs == typed.binary_outputs
    assert plain.all_binary == typed.all_binary
    a, b = plain.tensors, typed.tensors
    assert (a.outputs, a.id, a.parameters) == (b.outputs, b.id, b.parameters)
    assert len(a.inputs) == len(b.inputs)
    for x, y in zip(a.inputs, b.inputs, strict=True):
        assert (x.name, x.datatype, x.shape) == (y.name, y.datatype, y.shape)
        if type(x.values) is list and type(y.values) is list:
            assert x.values == y.values
        else:
            np.testing.assert_array_equal(_flat(x.values), _flat(y.values))


@pytest.mark.parametrize("case", list(BODIES), ids=list(BODIES))
def test_the_plain_reader_agrees_with_the_typed_one(case: str) -> None:
    body = BODIES[case]
    assert len(body) >= rest.PLAIN_MIN_BYTES
    try:
        typed = _typed(body)
    except ServingError as refused:
        message, kind = refused.message, type(refused)
    else:
        message, kind = None, None
    if kind is not None:
        with pytest.raises(kind) as again:
            rest.decode_request(body, None)
        assert again.value.message == message
        return
    plain = rest._plain(body)
    if plain is not None:
        _same(plain, typed)
    _same(rest.decode_request(body, None), typed)


def test_plain_bodies_take_the_plain_reader() -> None:
    for case in ("nested [N, 1]", "flat [N]", "id, parameters and outputs", "binary_data_output"):
        assert rest._plain(BODIES[case]) is not None, case
