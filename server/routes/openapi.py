"""The OpenAPI document, with request bodies derived from the served model's signature.

Routes read raw bytes (strict parsing is ours, and faster), so FastAPI cannot infer their
bodies; the schemas are written here from the signature's feature names, once per model.
The headers the middleware reads and writes are documented here too, since no route declares
them: `X-Request-ID` on every request and every answer, `X-Routing-Key` on every prediction
request, `X-Model-Variant` and `X-Model-Version` on every prediction, and, with AUTH_ENABLED,
the credentials (`X-API-Key`, or `Authorization: Bearer`) each route that needs a scope requires.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from server.codecs.records import FEATURE_LIMIT
from server.edge.route_policy import is_traffic, required_scope
from server.inference.open_inference import protocol_model_name
from server.live.loaded_model import LoadedModel
from server.routes.schemas import ErrorBody, OpenInferenceError
from server.settings import ServerSettings

PREDICT_REQUEST = "PredictRequest"
BATCH_REQUEST = "BatchPredictRequest"
INVOCATIONS_REQUEST = "InvocationsRequest"
INFER_REQUEST = "InferenceRequest"
V1_REQUEST = "V1PredictRequest"

_ERROR_DESCRIPTIONS = {
    400: "Malformed request (not JSON, wrong layout)",
    401: "No credential, or an invalid one (with AUTH_ENABLED)",
    403: "The credential lacks the route's scope",
    404: "Not found",
    409: "No challenger is configured (CHALLENGER_ALIAS or CHALLENGER_URI)",
    413: "Body larger than MAX_BODY_BYTES",
    415: "Unsupported content type",
    422: "Input breaks the model's signature; `details` name each field and record",
    429: "Rate limit reached; see Retry-After",
    503: "No model loaded yet, or at capacity (see Retry-After)",
    504: "No answer within REQUEST_TIMEOUT_SECONDS",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route can answer, all with the error body."""
    return {status: {"model": ErrorBody, "description": _ERROR_DESCRIPTIONS[status]} for status in statuses}


def open_inference_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`error_responses` in the Open Inference Protocol's error shape."""
    return {
        status: {"model": OpenInferenceError, "description": _ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }


PREDICTION_ERRORS = error_responses(400, 401, 403, 413, 415, 422, 429, 503, 504)
READ_ERRORS = error_responses(401, 403, 429, 503)


def request_body(component: str) -> dict[str, Any]:
    """`openapi_extra` pointing a route's JSON request body at a signature-derived component.

    /invocations also takes CSV and Parquet; its description says so, but its schema does not:
    "any string" would promise that any string is accepted, and the property-based tests hold
    the document to its promises."""
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}}
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
        "properties": {
            f.name: {"type": "number", "format": f.type, "minimum": -FEATURE_LIMIT, "maximum": FEATURE_LIMIT}
            for f in model.features
        },
        "required": [f.name for f in model.features if f.required],
        "additionalProperties": False,
    }
    if example:
        schema["example"] = example
    return schema


_TENSOR = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "example": "FP64"},
        "parameters": {"type": "object"},
        "data": {
            "type": "array",
            "items": {"oneOf": [{"type": "number"}, {"type": "array", "items": {"type": "number"}}]},
        },
    },
    "required": ["name", "shape", "datatype"],
}
_INFER = {
    "type": "object",
    "description": "The Open Inference Protocol's request: one input per feature (shape [N] or [N, 1]) "
    "or one [N, width] input; `data` flat or nested one level, or, with the binary tensor extension "
    "(`Inference-Header-Content-Length`), raw bytes after the JSON.",
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "items": _TENSOR, "minItems": 1},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
                "required": ["name"],
            },
        },
    },
    "required": ["inputs"],
}


def _v1_request(record_ref: dict[str, Any], width: int) -> dict[str, Any]:
    row = {"type": "array", "items": {"type": "number"}, "minItems": width, "maxItems": width}
    instances = {
        "oneOf": [
            {"type": "array", "items": record_ref, "minItems": 1},
            {"type": "array", "items": row, "minItems": 1},
        ]
    }
    return {
        "type": "object",
        "description": "Exactly one of `instances` and `inputs`: objects of features, or lists of "
        "values in signature order.",
        "properties": {"instances": instances, "inputs": instances},
    }


def _components(model: LoadedModel | None, max_batch_size: int) -> dict[str, Any]:
    record_ref = {"$ref": f"#/components/schemas/{PREDICT_REQUEST}"}
    names = list(model.feature_names or ()) if model is not None else []
    return {
        INFER_REQUEST: _INFER,
        V1_REQUEST: _v1_request(record_ref, len(names)),
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
                "dataframe_records": {"type": "array", "items": record_ref, "minItems": 1},
                "instances": {"type": "array", "items": record_ref, "minItems": 1},
                "inputs": {
                    "oneOf": [{"type": "array", "items": record_ref, "minItems": 1}, {"type": "object"}]
                },
                "params": {"type": "object"},
            },
            "minProperties": 1,
            # The unified LLM keys make MLflow read the body another way, which this model refuses.
            "not": {"anyOf": [{"required": [key]} for key in ("messages", "prompt", "input")]},
        },
    }


REQUEST_ID_PARAMETER = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    "description": "Your id for this request, echoed and logged when it is 1 to 128 letters, digits, "
    "`.`, `_`, `:` or `-`; any other value is replaced by a new id.",
    "schema": {"type": "string"},
}
RESPONSE_HEADERS = {
    "X-Request-ID": {
        "description": "The request's id: the client's when it sent a plain one, else a new one.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
    }
}
MODEL_VERSION_HEADER = {
    "X-Model-Version": {
        "description": "The registry version that answered.",
        "required": True,
        "schema": {"type": "string"},
    }
}
MODEL_VARIANT_HEADER = {
    "X-Model-Variant": {
        "description": "The variant that answered: `champion`, or `challenger` for its share of "
        "routing keys when a challenger is configured in split mode.",
        "required": True,
        "schema": {"type": "string", "enum": ["champion", "challenger"]},
    }
}
ROUTING_KEY_PARAMETER = {
    "name": "X-Routing-Key",
    "in": "header",
    "required": False,
    "description": "With a challenger in split mode, requests with the same key are always answered by "
    "the same variant (on every replica, after restarts). Without it: the authenticated caller's "
    "identity, else a random choice per request.",
    "schema": {"type": "string"},
}
SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key."},
    "Bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key, or a JWT when JWT_ALGORITHM is set.",
    },
}


def _document_headers(document: dict[str, Any], model: LoadedModel | None, settings: ServerSettings) -> None:
    """Declare the headers every operation reads and answers with, and its credentials."""
    version = model.source.version if model is not None else None
    if settings.auth_enabled:
        document["components"]["securitySchemes"] = SECURITY_SCHEMES
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            scope = required_scope(path, settings.metrics_auth, method.upper())
            operation.setdefault("parameters", []).append(REQUEST_ID_PARAMETER)
            if is_traffic(path):
                operation["parameters"].append(ROUTING_KEY_PARAMETER)
            for status, response in operation.get("responses", {}).items():
                headers = response.setdefault("headers", {})
                headers.update(RESPONSE_HEADERS)
                if is_traffic(path) and status == "200":
                    headers.update(MODEL_VARIANT_HEADER)
                    if version:
                        headers.update(MODEL_VERSION_HEADER)
            if settings.auth_enabled and scope is not None:
                operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
                operation["description"] = (
                    operation.get("description", "") + f"\n\nNeeds a credential with the `{scope}` scope."
                ).strip()


def _document_model_names(
    document: dict[str, Any], model: LoadedModel | None, settings: ServerSettings
) -> None:
    """The model-naming paths' parameters take the one name served (and its version): any other
    name is a 404, so the document says exactly which are accepted."""
    if model is None:
        return
    name = protocol_model_name(settings.model_name, model)
    version = model.source.version
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] != "path":
                    continue
                if parameter["name"] == "name":
                    parameter["schema"] = {"type": "string", "enum": [name]}
                elif parameter["name"] == "version" and version:
                    parameter["schema"] = {"type": "string", "enum": [version]}


class OpenApiBuilder:
    """Builds the document for the model being served, rebuilding only when the model changes."""

    def __init__(self, app: FastAPI, settings: ServerSettings, current: Any) -> None:
        self._app = app
        self._max_batch_size = settings.max_batch_size
        self._settings = settings
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
            _document_headers(document, model, self._settings)
            _document_model_names(document, model, self._settings)
            self._document, self._cached_for = document, model
        return self._document
