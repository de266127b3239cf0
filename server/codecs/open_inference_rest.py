"""The Open Inference Protocol's REST body (version 2): JSON, and the binary tensor extension.

A request is JSON (`inputs`, optional `id`, `parameters`, `outputs`), decoded by msgspec straight
into typed structs, in C: a tensor's `data` is flat or nested one level (`[N, 1]` columns,
`[N, 30]` rows), numbers only (booleans and strings are refused with the input and position).
With the binary extension (the `Inference-Header-Content-Length` header, as tritonclient sends
by default), the JSON header is followed by each input's raw little-endian bytes, in input
order, for the inputs whose `parameters.binary_data_size` says how many; outputs come back raw
too when asked (`binary_data` on an output, `binary_data_output` on the request).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import orjson
import simdjson

from server.codecs.limits import MAX_JSON_DEPTH
from server.codecs.plain_split import REUSED_PARSER_MAX_BYTES
from server.codecs.tensors import (
    MAX_LISTED_VALUES,
    InputTensor,
    OutputTensor,
    TensorRequest,
    check_shape,
    datatype_of,
    position_label,
    raw_bytes,
    refuse,
    shape_holds,
)
from server.errors import BadRequest, InvalidInput

HEADER_LENGTH = "inference-header-content-length"
BINARY_SIZE = "binary_data_size"
BINARY_OUTPUT = "binary_data"
BINARY_OUTPUTS = "binary_data_output"
JSON_MEDIA_TYPE = "application/json"
BINARY_MEDIA_TYPE = "application/octet-stream"


class _Input(msgspec.Struct, gc=False):
    name: str
    shape: list[int]
    datatype: str
    data: list[float | list[float]] | None = None
    parameters: dict[str, Any] | None = None


class _Output(msgspec.Struct, gc=False):
    name: str
    parameters: dict[str, Any] | None = None


class _Request(msgspec.Struct, gc=False):
    inputs: list[_Input]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[_Output] | None = None


_decode = msgspec.json.Decoder(_Request).decode
_DATA_AT = re.compile(r"at `\$\.inputs\[(\d+)\]\.data\[(\d+)\]")


@dataclass(frozen=True, slots=True)
class RestRequest:
    """A decoded request, and which outputs go back as raw bytes."""

    tensors: TensorRequest
    binary_outputs: frozenset[str]
    all_binary: bool


def decode_request(body: bytes, header_length: str | None) -> RestRequest:
    """The request in `body`; with the binary extension, `header_length` is the JSON's length."""
    if header_length is None and len(body) >= PLAIN_MIN_BYTES:
        fast = _plain(body)
        if fast is not None:
            return fast
    header, binary = _split(body, header_length)
    try:
        request = _decode(header)
    except msgspec.ValidationError as error:
        raise _shape_error(str(error)) from None
    except (msgspec.DecodeError, UnicodeDecodeError):  # a string of invalid UTF-8 is the latter
        raise BadRequest("the request body is not valid JSON", error_code="MALFORMED_REQUEST") from None
    except RecursionError:  # `parameters` nested a thousand levels deep, say
        raise BadRequest(
            "the request body nests arrays and objects too deeply", error_code="MALFORMED_REQUEST"
        ) from None
    inputs = _inputs(request.inputs, binary)
    outputs = request.outputs
    binary_outputs = frozenset(
        o.name for o in outputs or () if o.parameters and o.parameters.get(BINARY_OUTPUT) is True
    )
    return RestRequest(
        TensorRequest(
            inputs,
            tuple(o.name for o in outputs) if outputs else None,
            request.id,
            request.parameters,
        ),
        binary_outputs,
        bool(request.parameters and request.parameters.get(BINARY_OUTPUTS) is True),
    )


# Below this size msgspec's typed decode is the cheaper one (simdjson's per-input lookups cost
# more than the few numbers they spare): about 15 rows of 30 columns.
PLAIN_MIN_BYTES = 6 * 1024
_TOP_KEYS = frozenset({"inputs", "id", "parameters", "outputs"})
_INPUT_KEYS = frozenset({"name", "shape", "datatype", "data"})
_NOT_PLAIN = (ValueError, TypeError, KeyError, IndexError, RuntimeError, RecursionError)
_parsers = threading.local()


def _plain(body: bytes) -> RestRequest | None:
    """A plain JSON request read by simdjson, each input's numbers copied straight into doubles
    (msgspec makes a Python float of each: 1.2 ms for 100 rows of 30 columns against 0.1 ms;
    below PLAIN_MIN_BYTES msgspec is the cheaper).

    Plain: the protocol's keys only, none repeated, inputs with flat `data` (no binary
    extension; tritonclient and MLServer's clients send flat data). Flat is proven by the body's
    brackets, as `plain_split` proves its rows: every array the body may hold is counted (the
    inputs, each shape and data, those in `id`, `parameters` and `outputs`), so an array nested
    in data (which `as_buffer` would flatten into the numbers) makes one bracket too many, and a
    bracket inside a string only adds to the count. Nested data, whose rows cannot be proven
    alike without a Python step per row, is left to the typed path, as is anything else; that
    path also names every problem."""
    if body.startswith(b"\xef\xbb\xbf"):  # simdjson skips a byte-order mark; msgspec refuses it
        return None
    parser = getattr(_parsers, "parser", None) if len(body) <= REUSED_PARSER_MAX_BYTES else None
    if parser is None:
        parser = simdjson.Parser()
        if len(body) <= REUSED_PARSER_MAX_BYTES:
            _parsers.parser = parser
    try:
        document = parser.parse(body)
        if not isinstance(document, simdjson.Object) or not _plain_keys(document, _TOP_KEYS, "inputs"):
            return None
        inputs = document["inputs"]
        if not isinstance(inputs, simdjson.Array) or not len(inputs):
            return None
        expected_brackets = 1
        tensors = []
        for item in inputs:
            # Four keys, and each of the four found: exactly those, none repeated.
            if not isinstance(item, simdjson.Object) or len(item) != len(_INPUT_KEYS):
                return None
            name, datatype, shape, data = item["name"], item["datatype"], item["shape"], item["data"]
            if type(name) is not str or type(datatype) is not str or not isinstance(shape, simdjson.Array):
                return None
            if not isinstance(data, simdjson.Array):
                return None
            dimensions = shape.as_list()
            if not all(type(d) is int for d in dimensions):
                return None
            expected_brackets += 2
            values = np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64)
            if values.size != len(data):
                return None
            tensors.append(InputTensor(name, datatype, tuple(dimensions), values))
        extras = {key: _python(document[key]) for key in ("id", "parameters", "outputs") if key in document}
    except _NOT_PLAIN:
        return None
    finally:
        # The parser parses again only once nothing of its document is alive: not even in the
        # frame of an exception on its way up.
        document = inputs = item = shape = data = None
    counts = [_lists_in(value) for value in extras.values()]
    if None in counts or body.count(b"[") != expected_brackets + sum(counts):  # type: ignore[arg-type]
        return None
    for position, tensor in enumerate(tensors):
        shape, count = tensor.shape, len(tensor.values)
        if not shape_holds(shape, count):
            check_shape(shape, count, position_label(position))  # raises, saying which
    return _plain_request(tensors, extras)


def _python(value: Any) -> Any:
    """A simdjson value as Python's own (it must not outlive the parse)."""
    if isinstance(value, simdjson.Array):
        return value.as_list()
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    return value


def _plain_keys(document: simdjson.Object, allowed: frozenset[str], *required: str) -> bool:
    keys = list(document.keys())
    return len(keys) == len(set(keys)) and allowed.issuperset(keys) and all(k in keys for k in required)


def _lists_in(value: Any) -> int | None:
    """The JSON arrays in a decoded value (what its brackets count), without recursion; None
    past MAX_JSON_DEPTH levels, which the typed path reads (and past a thousand, refuses)."""
    count, pending = 0, [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            return None
        if isinstance(item, list):
            count += 1
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, dict):
            pending.extend((child, depth + 1) for child in item.values())
    return count


def _plain_request(tensors: list[InputTensor], extras: dict[str, Any]) -> RestRequest | None:
    """The request of a plain body, its optional parts held to the typed path's types."""
    request_id, parameters, outputs = extras.get("id"), extras.get("parameters"), extras.get("outputs")
    if request_id is not None and type(request_id) is not str:
        return None
    if outputs is not None and type(outputs) is not list:
        return None
    if parameters is not None and type(parameters) is not dict:
        return None
    names = []
    binary_outputs = set()
    for output in outputs or ():
        if type(output) is not dict or type(output.get("name")) is not str:
            return None
        output_parameters = output.get("parameters")
        if output_parameters is not None and type(output_parameters) is not dict:
            return None
        names.append(output["name"])
        if output_parameters and output_parameters.get(BINARY_OUTPUT) is True:
            binary_outputs.add(output["name"])
    return RestRequest(
        TensorRequest(tensors, tuple(names) if names else None, request_id, parameters),
        frozenset(binary_outputs),
        bool(parameters and parameters.get(BINARY_OUTPUTS) is True),
    )


def _split(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    if header_length is None:
        return body, memoryview(b"")
    try:
        length = int(header_length)
    except ValueError:
        length = -1
    if not 0 <= length <= len(body):
        raise BadRequest(
            f"the {HEADER_LENGTH} header must be the JSON header's length in bytes, "
            f"at most the body's {len(body)}"
        )
    view = memoryview(body)
    return view[:length].tobytes(), view[length:]


def _shape_error(message: str) -> InvalidInput:
    """msgspec's complaint (types and paths only: it quotes no value) as the protocol's error."""
    found = _DATA_AT.search(message)
    if found is not None:
        position, index = found.groups()
        return refuse(f"{position_label(int(position))}, data[{index}]: values must be numbers")
    return refuse(f"the request does not follow the Open Inference Protocol: {message}")


def _inputs(inputs: list[_Input], binary: memoryview) -> list[InputTensor]:
    """The request's tensors. The loop runs once per input (thirty for one row in the column
    layout), so the usual input costs it as few Python steps as can be: labels are made for
    errors only."""
    tensors = []
    offset = 0
    for position, item in enumerate(inputs):
        parameters = item.parameters
        data = item.data
        if parameters is not None and parameters.get(BINARY_SIZE) is not None:
            if data is not None:
                raise refuse(f"{position_label(position)}: holds both data and {BINARY_SIZE}")
            values, offset = _raw(item, parameters[BINARY_SIZE], binary, offset, position_label(position))
            count = len(values)
        elif data is None:
            raise refuse(f"{position_label(position)}: holds no data")
        else:
            values = data
            count = len(data) if not data or type(data[0]) is float else _nested_count(data, position)
        shape = item.shape
        if not shape_holds(shape, count):
            # raises, saying which; nested data's own count, in case its rows are not alike
            held = _values_in(values) if type(values) is list else count
            check_shape(shape, held, position_label(position))
        tensors.append(InputTensor(item.name, item.datatype, tuple(shape), values))
    if offset != len(binary):
        raise refuse(
            f"the body holds {len(binary) - offset} bytes after the inputs' {BINARY_SIZE} say it ends"
        )
    return tensors


def _raw(item: _Input, size: Any, binary: memoryview, offset: int, label: str) -> tuple[np.ndarray, int]:
    if type(size) is not int or size < 0:
        raise refuse(f"{label}: {BINARY_SIZE} must be a number of bytes")
    if offset + size > len(binary):
        raise refuse(f"{label}: {BINARY_SIZE} reaches past the end of the body")
    dtype = datatype_of(item.datatype, label)
    if size % dtype.itemsize:
        raise refuse(f"{label}: {size} bytes are not a whole number of {item.datatype} values")
    values = np.frombuffer(binary[offset : offset + size], dtype=dtype)
    return values, offset + size


def _values_in(data: list[Any]) -> int:
    return sum(len(row) if type(row) is list else 1 for row in data)


def _nested_count(data: list[Any], position: int) -> int:
    """How many values nested `data` holds as the layout reads it: rows as long as the first (a
    ragged or mixed list is refused when it is made into an array)."""
    count = len(data) * len(data[0])
    if count > MAX_LISTED_VALUES:
        raise refuse(f"{position_label(position)}: data holds more than {MAX_LISTED_VALUES} values")
    return count


@dataclass(frozen=True, slots=True)
class RestResponse:
    body: bytes
    media_type: str
    header_length: int | None


def encode_response(
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: list[OutputTensor],
    binary: frozenset[str] | bool,
) -> RestResponse:
    """The response body; outputs named in `binary` (every one, when True) travel as raw bytes."""
    chunks: list[bytes] = []
    entries = []
    for output in outputs:
        entry: dict[str, Any] = {"name": output.name, "datatype": output.datatype, "shape": output.shape}
        if binary is True or (binary and output.name in binary):
            raw = raw_bytes(output)
            entry["parameters"] = {BINARY_SIZE: len(raw)}
            chunks.append(raw)
        else:
            values = output.values
            entry["data"] = values if values.dtype != object else values.tolist()
        entries.append(entry)
    document: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        document["id"] = request_id
    document["outputs"] = entries
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return RestResponse(header, JSON_MEDIA_TYPE, None)
    return RestResponse(b"".join((header, *chunks)), BINARY_MEDIA_TYPE, len(header))
