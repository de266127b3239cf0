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
    # Shapes of brackets that a count of them alone would not tell apart:
    "ragged rows": json.dumps(
        _changed(3, shape=[ROWS + 1], data=[[1.0]] * (ROWS - 1) + [[2.0, 3.0]])
    ).encode(),
    "rows of 29 and 31 in a matrix": json.dumps(
        {
            "inputs": [
                {
                    "name": "m",
                    "datatype": "FP64",
                    "shape": [ROWS, 30],
                    "data": [[1.0] * 29, [100.0] + [2.0] * 30] + [[3.0] * 30] * (ROWS - 2),
                }
            ]
        }
    ).encode(),
    "one row deeper, one shallower": json.dumps(
        _changed(3, shape=[ROWS], data=[[1.0]] * (ROWS - 2) + [[[2.0]], 3.0])
    ).encode(),
    "an empty row": json.dumps(
        _changed(3, shape=[ROWS], data=[[]] + [[1.0]] * (ROWS - 2) + [[1.0, 2.0]])
    ).encode(),
    "outputs a number": json.dumps({**_request(), "outputs": 5}).encode(),
    "outputs false": json.dumps({**_request(), "outputs": False}).encode(),
    "outputs an object": json.dumps({**_request(), "outputs": {}}).encode(),
    "a byte-order mark": b"\xef\xbb\xbf" + json.dumps(_request()).encode(),
    "invalid UTF-8 in a name": json.dumps(_changed(3, name="feature_4@")).encode().replace(b"@", b"\xff"),
    "flat data with an array inside": json.dumps(
        {
            "inputs": [
                {**t, "shape": [ROWS], "data": [*[v[0] for v in t["data"]][:-1], [9.0]]}
                for t in _request()["inputs"]
            ]
        }
    ).encode(),
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


FLAT = {"inputs": [{**t, "shape": [ROWS], "data": [v[0] for v in t["data"]]} for t in _request()["inputs"]]}


def test_flat_bodies_take_the_plain_reader_and_nested_ones_the_typed() -> None:
    """Nested rows cannot be proven alike without a Python step per row: the typed reader has them."""
    flat_with_extras = {
        **FLAT,
        "id": "r",
        "parameters": {"binary_data_output": True},
        "outputs": [{"name": "label"}],
    }
    for document in (FLAT, flat_with_extras):
        assert rest._plain(json.dumps(document).encode()) is not None
    assert rest._plain(BODIES["nested [N, 1]"]) is None


@pytest.mark.parametrize("small", [True, False], ids=["typed reader", "plain reader"])
def test_json_nested_a_thousand_levels_deep_is_a_400(small: bool) -> None:
    document = FLAT if not small else {"inputs": FLAT["inputs"][:1]}
    text = json.dumps(document)[:-1] + ', "parameters": {"x": ' + "[" * 1000 + "]" * 1000 + "}}"
    body = text.encode()
    assert (len(body) < rest.PLAIN_MIN_BYTES) == small
    with pytest.raises(ServingError) as refused:
        rest.decode_request(body, None)
    assert refused.value.status_code == 400
    assert refused.value.message == "the request body nests arrays and objects too deeply"


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ([2] * 300, "input at position 0: shape has 300 dimensions; at most 8"),
        ([2**63 - 1, 2], "input at position 0: a dimension of its shape is over 16777216"),
        ([-1, -40], "input at position 0: shape must hold sizes, not negative numbers"),
    ],
    ids=["300 dimensions", "a huge dimension", "negative dimensions"],
)
@pytest.mark.parametrize("large", [False, True], ids=["typed reader", "plain reader"])
def test_shapes_are_bounded_before_they_are_multiplied(shape: list[int], message: str, large: bool) -> None:
    inputs = FLAT["inputs"] if large else FLAT["inputs"][:1]
    body = json.dumps({"inputs": [{**inputs[0], "shape": shape}, *inputs[1:]]}).encode()
    assert (len(body) >= rest.PLAIN_MIN_BYTES) == large
    with pytest.raises(ServingError) as refused:
        rest.decode_request(body, None)
    assert refused.value.message == message


def test_invalid_utf8_in_a_small_body_is_a_400() -> None:
    body = b'{"inputs":[{"name":"a\xff","datatype":"FP64","shape":[1],"data":[1]}]}'
    with pytest.raises(ServingError) as refused:
        rest.decode_request(body, None)
    assert (refused.value.status_code, refused.value.message) == (400, "the request body is not valid JSON")
