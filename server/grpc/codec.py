"""`ModelInferRequest` -> `TensorRequest`, and output tensors -> `ModelInferResponse`.

An input's values come from `raw_input_contents` (one entry per input, little-endian bytes of
its datatype, as tritonclient sends them) or from the typed `contents` field its datatype uses;
never both. Outputs go back raw when the inputs came raw (what such clients read fastest), typed
otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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
from server.grpc import messages

# The typed contents field each numeric datatype travels in.
CONTENTS_FIELD = {
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}
_OUTPUT_FIELD = {"INT64": "int64_contents", "FP64": "fp64_contents", "BOOL": "bool_contents"}


def decode_request(request: Any) -> tuple[TensorRequest, bool]:
    """The request's tensors, and whether its inputs came as raw bytes. The loop runs once per
    input (thirty for one row in the column layout): labels are made for errors only."""
    raw = request.raw_input_contents
    inputs = request.inputs
    if raw and len(raw) != len(inputs):
        raise refuse(f"raw_input_contents holds {len(raw)} entries for {len(inputs)} inputs; one per input")
    tensors = []
    for position, tensor in enumerate(inputs):
        values = _raw(tensor, raw[position], position) if raw else _typed(tensor, position)
        shape = tuple(tensor.shape)
        if not shape_holds(shape, len(values)):
            check_shape(shape, len(values), position_label(position))  # raises, saying which
        tensors.append(InputTensor(tensor.name, tensor.datatype, shape, values))
    outputs = tuple(output.name for output in request.outputs) or None
    return TensorRequest(tensors, outputs, request.id or None, None), bool(raw)


def _raw(tensor: Any, data: bytes, position: int) -> np.ndarray:
    dtype = datatype_of(tensor.datatype, position_label(position))
    if tensor.HasField("contents") and tensor.contents.ListFields():
        raise refuse(f"{position_label(position)}: holds contents beside raw_input_contents")
    if len(data) % dtype.itemsize:
        raise refuse(
            f"{position_label(position)}: {len(data)} raw bytes are not a whole number of "
            f"{tensor.datatype} values"
        )
    return np.frombuffer(data, dtype=dtype)


def _typed(tensor: Any, position: int) -> list[Any]:
    """The typed contents as a list (the layout makes every input's into one array at once)."""
    field = CONTENTS_FIELD.get(tensor.datatype)
    if field is None:
        label = position_label(position)
        datatype_of(tensor.datatype, label)  # raises for a type no feature takes
        # FP16 has no typed field: it travels raw only
        raise refuse(
            f"{position_label(position)}: {tensor.datatype} values travel in raw_input_contents only"
        )
    contents = tensor.contents
    fields = contents.ListFields()
    if len(fields) > 1 or (fields and fields[0][0].name != field):
        raise refuse(f"{position_label(position)}: {tensor.datatype} values belong in contents.{field}")
    values = getattr(contents, field)
    if len(values) > MAX_LISTED_VALUES:
        raise refuse(f"{position_label(position)}: holds more than {MAX_LISTED_VALUES} values")
    return list(values)


def encode_response(
    model_name: str, version: str | None, request_id: str | None, outputs: list[OutputTensor], raw: bool
) -> Any:
    response = messages.ModelInferResponse(
        model_name=model_name, model_version=version or "", id=request_id or ""
    )
    for output in outputs:
        tensor = response.outputs.add(name=output.name, datatype=output.datatype, shape=output.shape)
        if raw:
            response.raw_output_contents.append(raw_bytes(output))
        elif output.datatype == "BYTES":
            tensor.contents.bytes_contents.extend(str(item).encode() for item in output.values.tolist())
        else:
            getattr(tensor.contents, _OUTPUT_FIELD[output.datatype]).extend(output.values.tolist())
    return response
