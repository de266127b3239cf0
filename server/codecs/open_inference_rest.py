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
from dataclasses import dataclass
from math import prod
from typing import Any

import msgspec
import numpy as np
import orjson

from server.codecs.tensors import (
    InputTensor,
    OutputTensor,
    TensorRequest,
    check_shape,
    datatype_of,
    raw_bytes,
)
from server.errors import BadRequest, InvalidInput, Problem

HEADER_LENGTH = "inference-header-content-length"
BINARY_SIZE = "binary_data_size"
BINARY_OUTPUT = "binary_data"
BINARY_OUTPUTS = "binary_data_output"
JSON_MEDIA_TYPE = "application/json"
BINARY_MEDIA_TYPE = "application/octet-stream"

# Nested lists beyond this many values are refused before numpy builds them.
MAX_VALUES = 1_000_000


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
    header, binary = _split(body, header_length)
    try:
        request = _decode(header)
    except msgspec.ValidationError as error:
        raise _shape_error(str(error)) from None
    except msgspec.DecodeError:
        raise BadRequest("the request body is not valid JSON", error_code="MALFORMED_REQUEST") from None
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
        text = f"input at position {position}, data[{index}]: values must be numbers"
    else:
        text = f"the request does not follow the Open Inference Protocol: {message}"
    return InvalidInput(text, problems=[Problem(text)])


def _label(position: int) -> str:
    return f"input at position {position}"


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
                raise _invalid(f"{_label(position)}: holds both data and {BINARY_SIZE}")
            values, offset = _raw(item, parameters[BINARY_SIZE], binary, offset, _label(position))
            count = len(values)
        elif data is None:
            raise _invalid(f"{_label(position)}: holds no data")
        else:
            values = data
            count = len(data) if not data or type(data[0]) is float else _nested_count(data, position)
        shape = item.shape
        if (shape and min(shape) < 0) or prod(shape) != count:
            check_shape(shape, count, _label(position))  # raises, saying which
        tensors.append(InputTensor(item.name, item.datatype, tuple(shape), values))
    if offset != len(binary):
        raise _invalid(
            f"the body holds {len(binary) - offset} bytes after the inputs' {BINARY_SIZE} say it ends"
        )
    return tensors


def _raw(item: _Input, size: Any, binary: memoryview, offset: int, label: str) -> tuple[np.ndarray, int]:
    if type(size) is not int or size < 0:
        raise _invalid(f"{label}: {BINARY_SIZE} must be a number of bytes")
    if offset + size > len(binary):
        raise _invalid(f"{label}: {BINARY_SIZE} reaches past the end of the body")
    dtype = datatype_of(item.datatype, label)
    if size % dtype.itemsize:
        raise _invalid(f"{label}: {size} bytes are not a whole number of {item.datatype} values")
    values = np.frombuffer(binary[offset : offset + size], dtype=dtype)
    return values, offset + size


def _nested_count(data: list[Any], position: int) -> int:
    """How many values nested `data` holds as the layout reads it: rows as long as the first (a
    ragged or mixed list is refused when it is made into an array)."""
    count = len(data) * len(data[0])
    if count > MAX_VALUES:
        raise _invalid(f"{_label(position)}: data holds more than {MAX_VALUES} values")
    return count


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, problems=[Problem(message)])


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
