"""MLflow's scoring protocol for /invocations, answered exactly as `mlflow models serve` answers.

Two ways through:
- the fast path: a JSON body in one of MLflow's four layouts whose values are all plain numbers,
  for a model with the numpy entry point, goes straight to a float64 array (simdjson for
  `dataframe_split`, our compiled scanner for a list of records, msgspec for what those two
  leave, all in C);
- everything else (CSV, Parquet, strings that MLflow would coerce, nulls, `index`, other models)
  goes through MLflow's own parsers and `PyFuncModel.predict`, so MLflow decides what it accepts.

A request the fast path cannot prove clean is never refused by it: it falls through to MLflow's
path, whose verdict is by construction MLflow's. Errors keep MLflow's status and `error_code`,
but lose the `stack_trace` and any echo of the client's data (see `redact`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from io import BytesIO, StringIO
from itertools import chain
from typing import Any

import msgspec
import numpy as np
import orjson
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel
from mlflow.pyfunc.scoring_server import (
    _parse_json_data,
    parse_csv_input,
    parse_parquet_input,
    predictions_to_json,
)

from server.codecs.plain_records import PlainRecordsReader
from server.codecs.plain_split import PlainSplitReader
from server.codecs.records import struct_rows
from server.errors import ServingError, UnsupportedMediaType

CSV = "text/csv"
JSON = "application/json"
PARQUET = "application/vnd.apache.parquet"
MEDIA_TYPES = (CSV, JSON, PARQUET)
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_PROTOCOL_NAMES = frozenset({*FORMATS, "columns", "data", "index", "params"})


class ProtocolError(ServingError):
    """An error answered the way MLflow's scoring server answers it (status and error_code)."""

    status_code = 400
    error_code = "BAD_REQUEST"


@dataclass(frozen=True)
class FastRequest:
    """Rows already in signature order."""

    features: np.ndarray


@dataclass(frozen=True)
class PendingRequest:
    """A body for MLflow's own parsers (`InvocationCodec.parse`), with its JSON if already read."""

    media_type: str
    body: bytes
    document: dict[str, Any] | None


@dataclass(frozen=True)
class GeneralRequest:
    """Input parsed by MLflow's parsers, for `PyFuncModel.predict`."""

    data: Any
    params: dict[str, Any] | None


def media_type_of(header: str | None) -> str:
    """MLflow's content-type rules: one of three media types, UTF-8, no parameter but charset."""
    if not header:
        raise UnsupportedMediaType(f"a Content-Type header is required; supported: {list(MEDIA_TYPES)}")
    media_type, *pairs = (part.strip() for part in header.split(";"))
    parameters = {key: value for key, _, value in (pair.partition("=") for pair in pairs)}
    if parameters.get("charset", "utf-8").lower() != "utf-8":
        raise UnsupportedMediaType("The scoring server only supports UTF-8")
    unexpected = sorted(set(parameters) - {"charset"})
    if unexpected:
        raise UnsupportedMediaType(f"Unrecognized content type parameters: {', '.join(unexpected)}")
    if media_type not in MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"This predictor only supports the following content types: {list(MEDIA_TYPES)}"
        )
    return media_type


class _FastDecoder:
    """msgspec decoders for the four JSON layouts when every value is a plain number.

    They accept only bodies MLflow reads as exactly these doubles: one layout (plus `params`,
    which a model without a params schema ignores), no other key, every listed feature, no
    booleans, nulls or strings, nothing empty. A body they refuse is not wrong, only not plain:
    MLflow's parsers take it from there.
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        record = msgspec.defstruct(
            "Record", [(n, float) for n in names], forbid_unknown_fields=True, gc=False
        )
        columns = msgspec.defstruct("Columns", [(n, list[float]) for n in names], forbid_unknown_fields=True)
        split = msgspec.defstruct(
            "Split", [("columns", list[str]), ("data", list[list[float]])], forbid_unknown_fields=True
        )
        request = msgspec.defstruct(
            "Invocation",
            [
                ("dataframe_split", split | None, None),
                ("dataframe_records", list[record] | None, None),
                ("instances", list[record] | None, None),
                ("inputs", list[record] | columns | None, None),
                ("params", Any, None),
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
        except msgspec.MsgspecError:
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
        return self._name_set | _PROTOCOL_NAMES

    def decode(self, body: bytes, media_type: str) -> FastRequest | PendingRequest:
        """The fast path when the body qualifies; otherwise the body, for `parse` off the event loop."""
        if media_type != JSON:
            return PendingRequest(media_type, body, None)
        if self._fast is not None:
            features = self._fast(body)
            if features is not None:
                return FastRequest(features)
        return PendingRequest(media_type, body, _json_document(body))

    def parse(self, pending: PendingRequest) -> GeneralRequest:
        """MLflow's parsers, exactly as its scoring server calls them (CPU-bound: run in a thread)."""
        if pending.document is not None:
            parsed = _mlflow_call(_parse_json_data, pending.document, self._pyfunc.metadata, self._schema)
            return GeneralRequest(parsed.data, parsed.params)
        if pending.media_type == CSV:
            try:
                text = pending.body.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError(
                    "Invalid input. Ensure that input is a valid UTF-8 encoded string."
                ) from None
            return GeneralRequest(_mlflow_call(parse_csv_input, StringIO(text), self._schema), None)
        return GeneralRequest(_mlflow_call(parse_parquet_input, BytesIO(pending.body)), None)


def _json_document(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, read as MLflow reads it (Python's json, NaN allowed)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            document = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            reason = error.msg if isinstance(error, json.JSONDecodeError) else "it is not valid UTF-8"
            raise ProtocolError(
                f"Invalid input. Ensure that input is a valid JSON formatted string: {reason}"
            ) from None
        except RecursionError:
            raise ProtocolError(
                "Invalid input. Ensure that input is a valid JSON formatted string."
            ) from None
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


def from_mlflow(error: MlflowException) -> ProtocolError:
    """MLflow's status and code, with MLflow's message freed of echoed input and traces."""
    return ProtocolError(
        redact(error.message), status_code=error.get_http_status_code(), error_code=str(error.error_code)
    )


def predict_general(pyfunc: PyFuncModel, request: GeneralRequest) -> bytes:
    """Predict through MLflow's pyfunc path; the body MLflow's scoring server would return."""
    try:
        raw = pyfunc.predict(request.data, params=request.params)
    except MlflowException as error:
        raise from_mlflow(error) from None
    except Exception:  # noqa: BLE001 - MLflow answers any model failure with this 400
        raise ProtocolError(
            "Encountered an unexpected error while evaluating the model. Verify that the serialized "
            "input Dataframe is compatible with the model for inference."
        ) from None
    out = StringIO()
    predictions_to_json(raw, out)
    return out.getvalue().encode()


# MLflow quotes whole input frames and values into some messages; none of it may leave the server.
_ENFORCE = re.compile(r"Failed to enforce schema of data .*? with schema .*?\. Error: ", re.DOTALL)
_CONVERT = re.compile(r"Failed to convert data `.*?` to type", re.DOTALL)
# Quotes, brackets, separators, control bytes and the escapes repr() writes for them all end a
# token, in the body and in a message alike.
_BOUNDARY = r"""[\s,;:{}\[\]()"'`=<>|\\]"""
_MESSAGE_TOKEN = re.compile(rf"(?:\\x[0-9a-fA-F]{{2}}|\\[ntr0])|((?:(?!{_BOUNDARY}).)+)")
_BODY_BOUNDARY = rb"""[\s,;:{}\[\]()"'`=<>|\\\x00-\x1f\x7f]"""


def _sent_as_token(token: str, body: bytes) -> bool:
    """Whether `token` occurs in `body` as a whole token (a cheap substring test first)."""
    raw = token.encode()
    if raw not in body:
        return False
    pattern = rb"(?:^|(?<=" + _BODY_BOUNDARY + rb"))" + re.escape(raw) + rb"(?=" + _BODY_BOUNDARY + rb"|$)"
    return re.search(pattern, body) is not None


MIN_REDACTED_LENGTH = 3


def redact(message: str) -> str:
    """Drop the parts of an MLflow message that repeat the request's input frame."""
    message = _ENFORCE.sub("Failed to enforce the model signature. Error: ", message)
    message = _CONVERT.sub("Failed to convert the input to type", message)
    return " ".join(message.split())[:1000]


def scrub(error: ProtocolError, body: bytes, allowed: frozenset[str]) -> ProtocolError:
    """`error` with every token of its message that is also a token of the request body replaced
    by `…`. Feature names and the protocol's own keys stay: they say where the problem is.
    """

    def replace(match: re.Match[str]) -> str:
        token = match[1]
        if token is None or len(token) < MIN_REDACTED_LENGTH or token in allowed:
            return match[0]
        return "…" if _sent_as_token(token, body) else token

    message = _MESSAGE_TOKEN.sub(replace, error.message)
    return ProtocolError(message, status_code=error.status_code, error_code=error.error_code)
