"""MLflow's scoring protocol for /invocations, answered exactly as `mlflow models serve` answers.

Two ways through:
- the fast path: a JSON body in one of MLflow's four layouts whose values are all plain numbers,
  for a model a runtime scores (`server.runtimes`), goes straight to a float64 array (simdjson for
  `dataframe_split`, our compiled scanner for a list of records, msgspec for what those two
  leave, all in C);
- everything else (CSV, Parquet, strings that MLflow would coerce, nulls, `index`, other models)
  goes through MLflow's own parsers and `PyFuncModel.predict`, so MLflow decides what it accepts.

A request the fast path cannot prove clean is never refused by it: it falls through to MLflow's
path, whose verdict is by construction MLflow's. That path runs on a worker thread, and holds the
body to the limits (`server.codecs.limits`) before MLflow's parsers read it: JSON depth, keys per
object, rows and columns in every format, what a Parquet file decodes to. Errors keep MLflow's
status and `error_code`, but lose the `stack_trace` and any echo of the client's data
(`server.codecs.redaction`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from io import BytesIO, StringIO
from itertools import chain
from typing import Annotated, Any

import msgspec
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel

from server.codecs.input_bounds import check_csv, check_document
from server.codecs.limits import MAX_COLUMNS, MAX_JSON_DEPTH
from server.codecs.mlflow_scoring import (
    parse_csv_input,
    parse_json_data,
    parse_parquet_input,
    write_predictions,
)
from server.codecs.parquet_bounds import UNREADABLE, check_parquet
from server.codecs.plain_records import PlainRecordsReader
from server.codecs.plain_split import PlainSplitReader
from server.codecs.records import struct_rows
from server.codecs.redaction import ClientText, scrub
from server.errors import ServingError, UnsupportedMediaType

CSV = "text/csv"
JSON = "application/json"
PARQUET = "application/vnd.apache.parquet"
MEDIA_TYPES = (CSV, JSON, PARQUET)
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
# The protocol's own keys, where the protocol puts them: structure, not the client's data.
_TOP_KEYS = frozenset({*FORMATS, "params"})
_SPLIT_KEYS = frozenset({"columns", "data", "index"})


class ProtocolError(ServingError):
    """An error answered the way MLflow's scoring server answers it (status and error_code)."""

    status_code = 400
    error_code = "BAD_REQUEST"


class MlflowError(ProtocolError):
    """A `ProtocolError` carrying MLflow's own message, which may quote the client's input: it is
    scrubbed (`InvocationCodec.parse`, `.predict`) before it leaves the worker thread."""


@dataclass(frozen=True)
class FastRequest:
    """Rows already in signature order."""

    features: np.ndarray


@dataclass(frozen=True)
class PendingRequest:
    """A body for MLflow's own parsers (`InvocationCodec.parse`, on a worker thread)."""

    media_type: str
    body: bytes


@dataclass
class _Sent:
    """What a request got as far as, for checking error messages against what the client sent:
    built into `ClientText` only when MLflow's message needs checking."""

    pending: PendingRequest
    document: Any = None
    bounded: bool = False  # a Parquet body that passed its limits, safe to decode again

    def text(self) -> ClientText:
        if self.document is not None:
            return ClientText.of_document(_data_of(self.document))
        if self.pending.media_type == PARQUET:
            return ClientText.of_strings(_parquet_strings(self.pending.body, decode=self.bounded))
        return ClientText.of_body(self.pending.body)


@dataclass(frozen=True)
class GeneralRequest:
    """Input parsed by MLflow's parsers, for `PyFuncModel.predict`."""

    data: Any
    params: dict[str, Any] | None
    sent: _Sent = field(repr=False, compare=False)


def media_type_of(header: str | None) -> str:
    """MLflow's content-type rules: one of three media types, UTF-8, no parameter but charset."""
    if not header:
        raise UnsupportedMediaType(f"a Content-Type header is required; supported: {list(MEDIA_TYPES)}")
    media_type, *pairs = (part.strip() for part in header.split(";"))
    parameters = {key: value for key, _, value in (pair.partition("=") for pair in pairs)}
    if parameters.get("charset", "utf-8").lower() != "utf-8":
        raise UnsupportedMediaType("The scoring server only supports UTF-8")
    if set(parameters) - {"charset"}:  # MLflow names them; they are the client's text
        raise UnsupportedMediaType("Unrecognized content type parameters; only charset is accepted")
    if media_type not in MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"This predictor only supports the following content types: {list(MEDIA_TYPES)}"
        )
    return media_type


class _FastDecoder:
    """msgspec decoders for the four JSON layouts when every value is a plain number.

    They accept only bodies MLflow reads as exactly these doubles: one layout (plus `params`,
    which a model without a params schema ignores, so they are skipped unread, whatever their
    size or depth), no other key, every listed feature, no booleans, nulls or strings, nothing
    empty. A body they refuse is not wrong, only not plain: MLflow's parsers take it from there.
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        record = msgspec.defstruct(
            "Record", [(n, float) for n in names], forbid_unknown_fields=True, gc=False
        )
        columns = msgspec.defstruct("Columns", [(n, list[float]) for n in names], forbid_unknown_fields=True)
        split = msgspec.defstruct(
            "Split",
            [
                ("columns", Annotated[list[str], msgspec.Meta(max_length=MAX_COLUMNS)]),
                ("data", list[list[float]]),
            ],
            forbid_unknown_fields=True,
        )
        request = msgspec.defstruct(
            "Invocation",
            [
                ("dataframe_split", split | None, None),
                ("dataframe_records", list[record] | None, None),
                ("instances", list[record] | None, None),
                ("inputs", list[record] | columns | None, None),
                # Skipped, never decoded: a model without a params schema ignores them.
                ("params", msgspec.Raw, None),
            ],
            forbid_unknown_fields=True,
        )
        self._names = names
        self._name_set = frozenset(names)
        self._decode = msgspec.json.Decoder(request).decode
        self._plain_split = PlainSplitReader()
        # The layouts that are a list of records (MLflow reads `inputs` so when it is a list).
        self._plain_records = PlainRecordsReader(names, keys=("dataframe_records", "instances", "inputs"))

    def __call__(self, body: bytes) -> np.ndarray | None:
        split = self._plain_split(body)
        if split is not None:
            return self._in_signature_order(*split)
        records = self._plain_records.read(body)
        if records is not None:
            return records
        try:
            request = self._decode(body)
        except (msgspec.MsgspecError, RecursionError):  # skipping `params` recurses too: 1000 levels
            return None
        given = [
            layout
            for layout in (
                request.dataframe_split,
                request.dataframe_records,
                request.instances,
                request.inputs,
            )
            if layout is not None
        ]
        if len(given) != 1:
            return None
        layout = given[0]
        try:
            if isinstance(layout, list):
                return struct_rows(layout, len(self._names)) if layout else None
            if hasattr(layout, "data"):
                return self._split(layout.columns, layout.data)
            columns = [getattr(layout, name) for name in self._names]
            return np.array(columns, dtype=np.float64).T if columns[0] else None
        except ValueError:  # ragged rows or columns
            return None

    def _split(self, columns: list[str], data: list[list[float]]) -> np.ndarray | None:
        """A split `PlainSplitReader` left over (say, an integer beyond 64 bits that msgspec reads)."""
        width = len(columns)
        if not data or set(map(len, data)) != {width}:
            return None
        # A quarter faster than np.array on a thousand rows, which must find the shape first.
        rows = np.fromiter(chain.from_iterable(data), dtype=np.float64, count=len(data) * width)
        return self._in_signature_order(columns, rows.reshape(len(data), width))

    def _in_signature_order(self, columns: list[str], rows: np.ndarray) -> np.ndarray | None:
        """The signature's columns of `rows`, in its order; None unless each is there exactly once
        (extra columns are dropped, as MLflow's schema enforcement drops them)."""
        if len(set(columns)) != len(columns) or not self._name_set <= set(columns):
            return None
        if len(columns) == len(self._names) and columns == list(self._names):
            return rows
        return rows[:, [columns.index(name) for name in self._names]]


class InvocationCodec:
    """Decodes /invocations bodies for one loaded model."""

    def __init__(self, pyfunc: PyFuncModel, feature_names: tuple[str, ...] | None, fast: bool) -> None:
        self._pyfunc = pyfunc
        self._schema = pyfunc.metadata.get_input_schema()
        self._fast = _FastDecoder(feature_names) if fast and feature_names else None
        self._name_set = frozenset(feature_names or ())

    @property
    def allowed_names(self) -> frozenset[str]:
        """Names that may be quoted back in errors: they locate a problem, they are not data."""
        return self._name_set

    def decode(self, body: bytes, media_type: str) -> FastRequest | PendingRequest:
        """The fast path when the body qualifies (compiled readers, cheap enough for the event
        loop); otherwise the body, for `parse` on a worker thread."""
        if media_type == JSON and self._fast is not None:
            features = self._fast(body)
            if features is not None:
                return FastRequest(features)
        return PendingRequest(media_type, body)

    def parse(self, pending: PendingRequest, max_rows: int) -> GeneralRequest:
        """The body held to the limits, then MLflow's parsers, exactly as its scoring server calls
        them (CPU-bound: run in a thread). MLflow's messages leave scrubbed."""
        sent = _Sent(pending)
        try:
            if pending.media_type == JSON:
                sent.document = _json_document(pending.body)
                check_document(sent.document, max_rows, too_deep=_too_deep())
                parsed = _mlflow_call(parse_json_data, sent.document, self._pyfunc.metadata, self._schema)
                return GeneralRequest(parsed.data, parsed.params, sent)
            if pending.media_type == CSV:
                try:
                    text = pending.body.decode("utf-8")
                except UnicodeDecodeError:
                    raise ProtocolError(
                        "Invalid input. Ensure that input is a valid UTF-8 encoded string."
                    ) from None
                check_csv(text, max_rows)
                return GeneralRequest(_mlflow_call(parse_csv_input, StringIO(text), self._schema), None, sent)
            check_parquet(pending.body, max_rows, unreadable=ProtocolError(UNREADABLE))
            sent.bounded = True
            return GeneralRequest(_mlflow_call(parse_parquet_input, BytesIO(pending.body)), None, sent)
        except MlflowError as error:
            raise self._scrubbed(error, sent) from None

    def predict(self, request: GeneralRequest) -> bytes:
        """Predict through MLflow's pyfunc path; the body MLflow's scoring server would return."""
        return self.predict_raw(request)[0]

    def predict_raw(self, request: GeneralRequest) -> tuple[bytes, Any]:
        """`predict`'s body, and the model's own output it was written from."""
        try:
            raw = self._pyfunc.predict(request.data, params=request.params)
        except MlflowException as error:
            raise self._scrubbed(from_mlflow(error), request.sent) from None
        except Exception:  # noqa: BLE001 - MLflow answers any model failure with this 400
            raise model_failed() from None
        out = StringIO()
        write_predictions(raw, out)
        return out.getvalue().encode(), raw

    def _scrubbed(self, error: ProtocolError, sent: _Sent) -> ProtocolError:
        return scrubbed(error, sent.text(), self.allowed_names)


def model_failed() -> ProtocolError:
    """MLflow's answer when the model raises on a parsed request."""
    return ProtocolError(
        "Encountered an unexpected error while evaluating the model. Verify that the serialized "
        "input Dataframe is compatible with the model for inference."
    )


def scrubbed(error: ProtocolError, client: ClientText, allowed: frozenset[str]) -> ProtocolError:
    """`error` with its message freed of what the client sent (`server.codecs.redaction.scrub`)."""
    message = scrub(error.message, client, allowed)
    return ProtocolError(message, status_code=error.status_code, error_code=error.error_code)


def _data_of(document: dict[str, Any]) -> list[Any]:
    """The document without the protocol's own keys where the protocol puts them (`inputs`,
    `dataframe_split` and its `columns` and `data`, ...): what is left is what the client chose,
    values and keys of its own. So MLflow may name the layouts in its messages, and a client's
    value that happens to be `data` is still the client's."""
    parts: list[Any] = []
    for key, value in document.items():
        if key not in _TOP_KEYS:
            parts.append(key)
        if key == "dataframe_split" and isinstance(value, dict):
            parts += [part for k, v in value.items() for part in ((v,) if k in _SPLIT_KEYS else (k, v))]
        else:
            parts.append(value)
    return parts


def _too_deep() -> ProtocolError:
    return ProtocolError(
        f"Invalid input. JSON nested more than {MAX_JSON_DEPTH} levels deep is not accepted."
    )


def _parquet_strings(body: bytes, *, decode: bool) -> list[str]:
    """The column names of a Parquet body and, when it is `decode`-safe (within the limits), every
    distinct value of every leaf column as text: what pyarrow and pandas may quote."""
    try:
        parquet = pq.ParquetFile(pa.BufferReader(body))
        strings = [parquet.schema.column(i).path for i in range(parquet.metadata.num_columns)]
        strings += parquet.schema_arrow.names
        if not decode:
            return strings
        table = parquet.read(use_threads=False)
    except Exception:  # noqa: BLE001 - unreadable: MLflow's message can quote no more than this
        return []
    strings += table.column_names
    for column in table.columns:
        for chunk in column.chunks:
            strings += _leaf_strings(chunk)
    return strings


def _leaf_strings(array: pa.Array) -> list[str]:
    kind = array.type
    if pa.types.is_dictionary(kind):
        return _leaf_strings(array.dictionary)
    if isinstance(array, pa.MapArray):
        return _leaf_strings(array.keys) + _leaf_strings(array.items)
    if isinstance(array, (pa.ListArray, pa.LargeListArray, pa.FixedSizeListArray)):
        return _leaf_strings(array.flatten())
    if isinstance(array, pa.StructArray):
        return [text for child in array.flatten() for text in _leaf_strings(child)]
    values = pc.unique(array.drop_null())
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return [value.decode("latin-1") for value in values.to_pylist()]
    try:
        return [str(value) for value in pc.cast(values, pa.string()).to_pylist()]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return [str(value) for value in values.to_pylist()]


def _json_document(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, read as MLflow reads it (Python's json, NaN allowed)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if error.msg == "depth limit exceeded":  # orjson stops at 1024 levels
            raise _too_deep() from None
        try:
            document = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            reason = error.msg if isinstance(error, json.JSONDecodeError) else "it is not valid UTF-8"
            raise ProtocolError(
                f"Invalid input. Ensure that input is a valid JSON formatted string: {reason}"
            ) from None
        except RecursionError:
            raise _too_deep() from None
    if not isinstance(document, dict):
        kind = "a list" if isinstance(document, list) else f"type {type(document).__name__}"
        raise ProtocolError(
            f"Invalid input. The input must be a JSON dictionary with exactly one of the input fields "
            f"{set(FORMATS)}. Received {kind}."
        )
    return document


def _mlflow_call(function: Any, *args: Any) -> Any:
    """Call one of MLflow's parsers, turning its exceptions into protocol errors."""
    try:
        return function(*args)
    except MlflowException as error:
        raise from_mlflow(error) from None


def from_mlflow(error: MlflowException) -> MlflowError:
    """MLflow's status, code and message (the message still to be scrubbed), without its trace."""
    return MlflowError(
        error.message, status_code=error.get_http_status_code(), error_code=str(error.error_code)
    )
