"""The OpenAPI document, with request bodies derived from the served model's signature.

Routes read raw bytes (strict parsing is ours, and faster), so FastAPI cannot infer their
bodies; the schemas are written here from the signature's feature names, once per model.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from server.loaded_model import LoadedModel
from server.schemas import ErrorBody

PREDICT_REQUEST = "PredictRequest"
BATCH_REQUEST = "BatchPredictRequest"
INVOCATIONS_REQUEST = "InvocationsRequest"

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Malformed request (not JSON, wrong layout)",
        413: "Body larger than MAX_BODY_BYTES",
        415: "Unsupported content type",
        422: "Input breaks the model's signature; `details` name each field and record",
        503: "No model loaded yet",
    }.items()
}


def request_body(component: str, *, csv: bool = False) -> dict[str, Any]:
    """`openapi_extra` pointing a route's request body at a signature-derived component."""
    content: dict[str, Any] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}}
    if csv:
        content["text/csv"] = {"schema": {"type": "string"}}
        content["application/vnd.apache.parquet"] = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": True, "content": content}}


def _record_schema(model: LoadedModel | None) -> dict[str, Any]:
    if model is None or model.features is None:
        return {"type": "object", "description": "The model's features (no model loaded yet)."}
    example: dict[str, float] = {}
    if model.example is not None and len(model.example):
        example = {
            k: float(v) for k, v in model.example.iloc[0].items() if k in set(model.feature_names or ())
        }
    schema: dict[str, Any] = {
        "type": "object",
        "description": "One record: every feature of the model's signature, each a finite number.",
        "properties": {f.name: {"type": "number", "format": f.type} for f in model.features},
        "required": [f.name for f in model.features if f.required],
        "additionalProperties": False,
    }
    if example:
        schema["example"] = example
    return schema


def _components(model: LoadedModel | None, max_batch_size: int) -> dict[str, Any]:
    record_ref = {"$ref": f"#/components/schemas/{PREDICT_REQUEST}"}
    names = list(model.feature_names or ()) if model is not None else []
    return {
        PREDICT_REQUEST: _record_schema(model),
        BATCH_REQUEST: {
            "type": "object",
            "properties": {
                "records": {"type": "array", "items": record_ref, "minItems": 1, "maxItems": max_batch_size}
            },
            "required": ["records"],
            "additionalProperties": False,
        },
        INVOCATIONS_REQUEST: {
            "type": "object",
            "description": "Exactly one of the four layouts, and optional `params`.",
            "properties": {
                "dataframe_split": {
                    "type": "object",
                    "properties": {
                        "columns": {"type": "array", "items": {"type": "string"}, "example": names},
                        "data": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                        "index": {"type": "array"},
                    },
                    "required": ["data"],
                },
                "dataframe_records": {"type": "array", "items": record_ref},
                "instances": {"type": "array", "items": record_ref},
                "inputs": {"oneOf": [{"type": "array", "items": record_ref}, {"type": "object"}]},
                "params": {"type": "object"},
            },
            "minProperties": 1,
        },
    }


class OpenApiBuilder:
    """Builds the document for the model being served, rebuilding only when the model changes."""

    def __init__(self, app: FastAPI, max_batch_size: int, current: Any) -> None:
        self._app = app
        self._max_batch_size = max_batch_size
        self._current = current
        self._cached_for: LoadedModel | None = None
        self._document: dict[str, Any] | None = None

    def __call__(self) -> dict[str, Any]:
        model = self._current()
        if self._document is None or model is not self._cached_for:
            document = get_openapi(
                title=self._app.title,
                version=self._app.version,
                description=self._app.description,
                routes=self._app.routes,
            )
            document.setdefault("components", {}).setdefault("schemas", {}).update(
                _components(model, self._max_batch_size)
            )
            self._document, self._cached_for = document, model
        return self._document
