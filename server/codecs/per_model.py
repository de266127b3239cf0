"""One set of codecs per loaded model, built on first use and dropped with the model."""

from __future__ import annotations

from weakref import WeakKeyDictionary

from server.codecs.mlflow_protocol import InvocationCodec
from server.codecs.records import RecordCodec
from server.codecs.responses import PredictionEncoder
from server.errors import BadRequest
from server.live.loaded_model import LoadedModel

_records: WeakKeyDictionary[LoadedModel, RecordCodec] = WeakKeyDictionary()
_encoders: WeakKeyDictionary[LoadedModel, PredictionEncoder] = WeakKeyDictionary()
_invocations: WeakKeyDictionary[LoadedModel, InvocationCodec] = WeakKeyDictionary()


def record_codec(model: LoadedModel) -> RecordCodec:
    codec = _records.get(model)
    if codec is None:
        names = model.feature_names
        if names is None:
            raise BadRequest(
                "this model's signature has no named columns; send it MLflow's protocol on /invocations",
                error_code="UNSUPPORTED_BY_MODEL",
            )
        codec = _records[model] = RecordCodec(names)
    return codec


def invocation_codec(model: LoadedModel) -> InvocationCodec:
    codec = _invocations.get(model)
    if codec is None:
        codec = _invocations[model] = InvocationCodec(
            model.pyfunc, model.feature_names, fast=model.runtime is not None
        )
    return codec


def prediction_encoder(model: LoadedModel) -> PredictionEncoder:
    encoder = _encoders.get(model)
    if encoder is None:
        encoder = _encoders[model] = PredictionEncoder(model.runtime.class_names if model.runtime else ())
    return encoder
