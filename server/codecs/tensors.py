"""Open Inference Protocol tensors <-> a model's rows and answers, whatever carried them.

The protocol's REST (JSON, binary extension) and gRPC codecs turn their wire format into
`InputTensor`s; this module turns those into float64 rows in signature order and turns a
prediction into `OutputTensor`s. Tabular clients send one of two layouts, and both are taken:

- one tensor per column, named by the signature (`feature_1` ... `feature_30`), each of shape
  `[N]` or `[N, 1]` (how MLServer's MLflow runtime describes a column signature);
- one `[N, width]` tensor, its columns in signature order, whatever its name.

Values must be numbers the declared datatype can hold (integers for the integer types), finite
and within +/-1e100, the same range `/predict` accepts. A refusal names the input (by feature
name, or by position when the name is not a feature: a client's text is never quoted back) and
the row. FP32 and FP16 values are rounded to their type before scoring, as a server that keeps
the client's dtype would score them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import prod
from typing import Any, NamedTuple

import numpy as np

from model_wrapper import Prediction
from server.codecs.limits import MAX_COLUMNS, too_many_rows
from server.codecs.records import FEATURE_LIMIT, OUT_OF_RANGE
from server.errors import InvalidInput, Problem

# The protocol's numeric datatypes and the little-endian dtype each one's raw bytes hold.
NUMERIC_DATATYPES: dict[str, np.dtype[Any]] = {
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
OTHER_DATATYPES = frozenset({"BOOL", "BYTES", "BF16"})
FEATURE_DATATYPE = "FP64"

PREDICTION_OUTPUT = "prediction"
LABEL_OUTPUT = "label"
PROBABILITY_PREFIX = "probability_"


class InputTensor(NamedTuple):
    """One input as a codec read it: `values` is the flat, row-major contents, as float64 (typed
    gRPC contents) or in the datatype's own dtype (raw bytes), or JSON's numbers as decoded, in
    a list flat or nested one level (made into an array once, with the other inputs, when the
    layout allows)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray | list[Any]


@dataclass(frozen=True, slots=True)
class TensorRequest:
    """An inference request, protocol-neutral: its inputs, the outputs asked for (None: all),
    the client's id (echoed back) and parameters (accepted, not acted on)."""

    inputs: Sequence[InputTensor]
    outputs: tuple[str, ...] | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class OutputTensor:
    """One output: `values` is int64, float64 or (BYTES) an object array of str, of `shape`."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray


def refuse(message: str, *, field: str | None = None, index: int | None = None) -> InvalidInput:
    """The protocols' refusal of a request: its message is the whole answer (`{"error": ...}`)."""
    return InvalidInput(message, problems=[Problem(message, field=field, index=index)])


def position_label(position: int) -> str:
    """How an error names an input by its place in the request."""
    return f"input at position {position}"


def input_label(tensor: InputTensor, position: int, feature_names: frozenset[str]) -> str:
    """How an error names an input: its name when it is one of the model's, else its position."""
    return f"input {tensor.name}" if tensor.name in feature_names else position_label(position)


# Bounds on a shape as sent, checked before its dimensions are multiplied: the product of
# thousands of huge numbers takes seconds (and its message more digits than Python will print).
# Tabular inputs have one or two dimensions; no request of MAX_BATCH_SIZE rows needs more values
# in one input than MAX_TENSOR_VALUES.
MAX_DIMENSIONS = 8
MAX_TENSOR_VALUES = 1 << 24
# Values of one input that a codec makes into Python objects (JSON's nested lists, gRPC's typed
# contents) before the layout counts its rows: MAX_BATCH_SIZE rows of MAX_COLUMNS fit.
MAX_LISTED_VALUES = 1 << 20


def shape_holds(shape: Sequence[int], count: int) -> bool:
    """Whether `shape` is a bounded list of sizes whose product is `count` (the cheap check the
    codecs make per input; `check_shape` says what is wrong)."""
    if len(shape) > MAX_DIMENSIONS:
        return False
    if shape and (min(shape) < 0 or max(shape) > MAX_TENSOR_VALUES):
        return False
    return prod(shape) == count


def check_shape(shape: Sequence[int], count: int, label: str) -> tuple[int, ...]:
    """The shape, when its dimensions are sizes and hold exactly `count` values; else a refusal
    that says which rule it breaks."""
    if len(shape) > MAX_DIMENSIONS:
        raise refuse(f"{label}: shape has {len(shape)} dimensions; at most {MAX_DIMENSIONS}")
    if any(dimension < 0 for dimension in shape):
        raise refuse(f"{label}: shape must hold sizes, not negative numbers")
    if any(dimension > MAX_TENSOR_VALUES for dimension in shape):
        raise refuse(f"{label}: a dimension of its shape is over {MAX_TENSOR_VALUES}")
    if prod(shape) != count:
        raise refuse(f"{label}: shape {list(shape)} needs {prod(shape)} values, data holds {count}")
    return tuple(shape)


def datatype_of(datatype: str, label: str) -> np.dtype[Any]:
    dtype = NUMERIC_DATATYPES.get(datatype)
    if dtype is not None:
        return dtype
    if datatype in OTHER_DATATYPES:
        raise refuse(
            f"{label}: datatype {datatype} cannot carry a feature; send FP64, FP32 or an integer type"
        )
    raise refuse(
        f"{label}: unknown datatype; the protocol's numeric types are {', '.join(NUMERIC_DATATYPES)}"
    )


class TensorLayout:
    """One model's input contract in the protocol: its feature names, read from the signature."""

    def __init__(self, feature_names: Sequence[str]) -> None:
        self.feature_names = tuple(feature_names)
        self.width = len(self.feature_names)
        self._positions = {name: i for i, name in enumerate(self.feature_names)}
        self._names = frozenset(self.feature_names)

    def rows(self, inputs: Sequence[InputTensor], max_rows: int) -> np.ndarray:
        """The (N, width) float64 rows the inputs hold, checked; `InvalidInput` says what is wrong."""
        if not inputs:
            raise refuse("the request holds no inputs")
        if len(inputs) > MAX_COLUMNS:
            raise refuse(f"the request holds {len(inputs)} inputs; at most {MAX_COLUMNS}")
        if any(tensor.name in self._positions for tensor in inputs):
            return self._columns(inputs, max_rows)
        if len(inputs) == 1:
            return self.matrix(inputs[0], max_rows)
        raise refuse(
            f"send one input per feature, named as the model's signature names them "
            f"({self.feature_names[0]} ...), or one [N, {self.width}] input"
        )

    def matrix(self, tensor: InputTensor, max_rows: int) -> np.ndarray:
        """The rows of one [N, width] input, whatever its name."""
        label = input_label(tensor, 0, self._names)
        if len(tensor.shape) != 2 or tensor.shape[1] != self.width:
            raise refuse(
                f"{label}: a single input must have shape [N, {self.width}] (one column per feature, "
                f"in signature order), not {list(tensor.shape)}"
            )
        rows = tensor.shape[0]
        if rows > max_rows:
            raise too_many_rows(rows, max_rows)
        if rows == 0:
            raise refuse(f"{label}: holds no rows")
        values = _checked(tensor, label, width=self.width)
        return values.reshape(rows, self.width)

    def _columns(self, inputs: Sequence[InputTensor], max_rows: int) -> np.ndarray:
        """One input per feature. The loop runs once per feature, so labels are made for errors only."""
        positions = self._positions
        rows = inputs[0].shape[0] if inputs[0].shape else 0
        for position, tensor in enumerate(inputs):
            shape = tensor.shape
            if (
                tensor.name not in positions
                or not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1))
                or shape[0] != rows
            ):
                self._refuse_column(tensor, position, rows)
        if rows > max_rows:
            raise too_many_rows(rows, max_rows)
        if rows == 0:
            raise refuse(f"{input_label(inputs[0], 0, self._names)}: holds no rows")
        if len(inputs) != len({tensor.name for tensor in inputs}):
            seen: set[str] = set()
            for position, tensor in enumerate(inputs):
                if tensor.name in seen:
                    raise refuse(
                        f"{input_label(tensor, position, self._names)} is given twice", field=tensor.name
                    )
                seen.add(tensor.name)
        # No name twice and every name a feature's: fewer inputs than features means some are missing.
        missing: list[str] = []
        if len(inputs) != self.width:
            given = {tensor.name for tensor in inputs}
            missing = [name for name in self.feature_names if name not in given]
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise refuse(f"missing input{'s' if len(missing) > 1 else ''}: {shown}", field=missing[0])
        assert rows is not None
        fast = _fp64_columns(inputs, self._positions, rows)
        if fast is not None:
            return fast
        out = np.empty((rows, self.width), dtype=np.float64)
        for position, tensor in enumerate(inputs):
            label = input_label(tensor, position, self._names)
            out[:, self._positions[tensor.name]] = _checked(tensor, label, width=1)
        return out

    def _refuse_column(self, tensor: InputTensor, position: int, rows: int) -> None:
        """Raise what is wrong with one input of the column layout."""
        label = input_label(tensor, position, self._names)
        if tensor.name not in self._positions:
            raise refuse(
                f"{label} is not a feature of this model: with one input per feature, every "
                "input is named by the signature"
            )
        shape = tensor.shape
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise refuse(f"{label}: a feature's input must have shape [N] or [N, 1], not {list(shape)}")
        raise refuse(f"{label}: holds {shape[0]} rows where the inputs before it hold {rows}")


def _fp64_columns(inputs: Sequence[InputTensor], positions: dict[str, int], rows: int) -> np.ndarray | None:
    """The rows of one FP64 input per feature (JSON's lists, typed gRPC contents, raw float64
    bytes), made in one array and checked in one pass: the common request, which would otherwise
    cost a dozen numpy calls per feature. None when the inputs are anything else, or anything is
    wrong (the per-input path then says what)."""
    ordered: list[Any] = [None] * len(positions)
    for tensor in inputs:
        values = tensor.values
        if tensor.datatype != FEATURE_DATATYPE or not (type(values) is list or values.dtype == np.float64):
            return None
        ordered[positions[tensor.name]] = values
    try:
        columns = np.array(ordered, dtype=np.float64)
    except (TypeError, ValueError):  # flat beside nested, or ragged rows
        return None
    if columns.size != rows * len(positions):
        return None
    out = np.ascontiguousarray(columns.reshape(len(positions), rows).T)
    if not np.isfinite(out).all() or (np.abs(out) > FEATURE_LIMIT).any():
        return None
    return out


def flat_values(tensor: InputTensor, label: str, dtype: np.dtype[Any] | None = None) -> np.ndarray:
    """The tensor's values as a flat array (JSON's lists made into one). Integers (gRPC's typed
    integer contents) become an array of the integer `dtype` when it holds them, exactly: a
    double cannot tell 2**63 - 1 from 2**63."""
    values = tensor.values
    if type(values) is not list:
        return values
    if dtype is not None and dtype.kind in "iu" and values and type(values[0]) is int:
        try:
            return np.array(values, dtype=dtype)
        except (OverflowError, TypeError, ValueError):  # out of the type's range: the float path says where
            pass
    try:
        return np.array(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):  # rows of different lengths, or numbers among the rows
        raise refuse(f"{label}: data must be flat, or nested one level in rows of one length") from None


def _checked(tensor: InputTensor, label: str, *, width: int) -> np.ndarray:
    """The tensor's values as float64, each one a number its datatype holds, finite, in range.
    `width` values make a row (for the row number in an error)."""
    dtype = datatype_of(tensor.datatype, label)
    raw = flat_values(tensor, label, dtype)
    values = raw.astype(np.float64) if raw.dtype != np.float64 else raw
    if raw.dtype.kind == "f":
        bad = ~np.isfinite(values)
        if bad.any():
            raise _value_refusal(label, bad, width, "must be a finite number")
    if dtype.kind == "f":
        if raw.dtype != dtype:  # JSON or typed contents: the declared precision decides
            with np.errstate(over="ignore"):
                narrowed = values.astype(dtype)
            bad = ~np.isfinite(narrowed)
            if bad.any():
                raise _value_refusal(label, bad, width, f"does not fit {tensor.datatype}")
            values = narrowed.astype(np.float64)
    elif raw.dtype.kind == "f":
        info = np.iinfo(dtype)
        # A 64-bit type's largest value rounds up to 2**63 or 2**64 as a double: that is out of range.
        upper = float(info.max)
        too_large = values >= upper if dtype.itemsize == 8 else values > upper
        bad = (values != np.floor(values)) | (values < info.min) | too_large
        if bad.any():
            raise _value_refusal(label, bad, width, f"must be an integer {tensor.datatype} holds")
    bad = np.abs(values) > FEATURE_LIMIT
    if bad.any():
        raise _value_refusal(label, bad, width, OUT_OF_RANGE)
    return values


def _value_refusal(label: str, bad: np.ndarray, width: int, reason: str) -> InvalidInput:
    flat = np.flatnonzero(bad)
    row = int(flat[0]) // width
    more = len(flat) - 1
    suffix = f" (and {more} more value{'s' if more > 1 else ''})" if more else ""
    return refuse(f"{label}, row {row}: {reason}{suffix}", index=row)


class OutputLayout:
    """One classifier's outputs: `prediction` (the class value), `label` (its name) and one
    `probability_<class name>` per class, in that order."""

    def __init__(self, classes: np.ndarray, class_names: Sequence[str]) -> None:
        self.prediction_datatype, self._prediction_cast = _class_datatype(classes)
        self.probability_names = tuple(f"{PROBABILITY_PREFIX}{name}" for name in class_names)
        self.names = (PREDICTION_OUTPUT, LABEL_OUTPUT, *self.probability_names)
        self._known = frozenset(self.names)

    def metadata(self) -> list[tuple[str, str]]:
        """(name, datatype) of each output."""
        return [
            (PREDICTION_OUTPUT, self.prediction_datatype),
            (LABEL_OUTPUT, "BYTES"),
            *((name, FEATURE_DATATYPE) for name in self.probability_names),
        ]

    def check_requested(self, requested: Sequence[str] | None) -> tuple[str, ...] | None:
        """The outputs asked for, each one this model has (checked before the model runs)."""
        if requested is None:
            return None
        for position, name in enumerate(requested):
            if name not in self._known:
                raise refuse(
                    f"output at position {position} is not one of this model's outputs "
                    f"({', '.join(self.names)})"
                )
        return tuple(dict.fromkeys(requested))

    def tensors(self, prediction: Prediction, requested: tuple[str, ...] | None) -> list[OutputTensor]:
        rows = len(prediction.labels)
        shape = (rows, 1)
        wanted = self.names if requested is None else requested
        out = []
        for name in wanted:
            if name == PREDICTION_OUTPUT:
                out.append(
                    OutputTensor(
                        name, self.prediction_datatype, shape, self._prediction_cast(prediction.classes)
                    )
                )
            elif name == LABEL_OUTPUT:
                out.append(OutputTensor(name, "BYTES", shape, np.asarray(prediction.labels, dtype=object)))
            else:
                column = self.probability_names.index(name)
                out.append(
                    OutputTensor(
                        name,
                        FEATURE_DATATYPE,
                        shape,
                        np.ascontiguousarray(prediction.probabilities[:, column]),
                    )
                )
        return out


def _class_datatype(classes: np.ndarray) -> tuple[str, Any]:
    """The datatype class values travel in: INT64 for integer classes, FP64 for float ones, BOOL
    for booleans, else BYTES (their text)."""
    kind = classes.dtype.kind
    if kind in "iu":
        return "INT64", lambda values: np.asarray(values, dtype=np.int64)
    if kind == "f":
        return "FP64", lambda values: np.asarray(values, dtype=np.float64)
    if kind == "b":
        return "BOOL", lambda values: np.asarray(values, dtype=bool)
    return "BYTES", lambda values: np.asarray([str(v) for v in values], dtype=object)


def raw_bytes(output: OutputTensor) -> bytes:
    """A tensor's raw contents: little-endian numbers, or BYTES as 4-byte lengths before each item."""
    if output.datatype == "BYTES":
        parts = []
        for item in output.values.tolist():
            encoded = str(item).encode()
            parts.append(len(encoded).to_bytes(4, "little"))
            parts.append(encoded)
        return b"".join(parts)
    if output.datatype == "BOOL":
        return np.asarray(output.values, dtype=np.bool_).tobytes()
    return np.ascontiguousarray(output.values, dtype=NUMERIC_DATATYPES[output.datatype]).tobytes()
