"""The Open Inference Protocol over REST (version 2, as KServe, Triton and MLServer speak it).

Endpoints are thin: the path names the model (and version), `server.codecs.open_inference_rest`
reads and writes the body, `server.inference.open_inference` does the rest. Errors take the
protocol's `{"error": "..."}` shape (the route policy marks these paths). The infer endpoint
takes the request alone, so the fast lane calls it too.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from server.codecs.body import read_body, require_identity_encoding
from server.codecs.limits import INLINE_READ_MAX_BYTES
from server.codecs.open_inference_rest import HEADER_LENGTH, decode_request, encode_response
from server.edge.request_context import current_request_id
from server.edge.route_path import route_path
from server.errors import UnsupportedMediaType
from server.inference.open_inference import OpenInference
from server.inference.variants import Served
from server.live.readiness import answers_example
from server.routes.answers import answered
from server.routes.dependencies import ServicesDep, services_of
from server.routes.openapi import INFER_REQUEST, open_inference_errors, request_body
from server.routes.predictions import noted, routing_key

router = APIRouter(prefix="/v2", tags=["open inference protocol"])

OIP_ERRORS = open_inference_errors(400, 401, 403, 404, 413, 415, 422, 429, 503, 504)
OIP_READ_ERRORS = open_inference_errors(401, 403, 404, 429, 503)
_MODELS = "/v2/models/"
_ACCEPTED_MEDIA = ("application/json", "application/octet-stream")


def model_reference(path: str) -> tuple[str, str | None]:
    """(name, version or None) from a path under /v2/models/ (already matched by the route
    policy's templates)."""
    parts = path[len(_MODELS) :].split("/")
    if len(parts) >= 3 and parts[1] == "versions":
        return parts[0], parts[2]
    return parts[0], None


def resolve(request: Request, plane: OpenInference, path: str) -> Served:
    """The variant a request for the path's model answers with, noted for the traffic metrics."""
    name, version = model_reference(path)
    return noted(request, plane.served(name, version, routing_key(request)))


@router.get("", summary="Server metadata", responses=open_inference_errors(401, 403, 429))
async def server_metadata(services: ServicesDep) -> JSONResponse:
    return JSONResponse(services.open_inference.server_metadata())


@router.get("/health/live", summary="Liveness (open to probes)")
async def live() -> JSONResponse:
    return JSONResponse({"live": True})


@router.get(
    "/health/ready",
    summary="Readiness: a model is loaded and answers (open to probes)",
    responses={503: {"description": "Not ready"}},
)
async def ready(services: ServicesDep) -> JSONResponse:
    model = services.store.peek()
    if model is None:
        return JSONResponse({"ready": False}, status_code=503)
    try:
        await run_in_threadpool(answers_example, model)
    except Exception:  # noqa: BLE001 - any failure means "not ready"; /ping logs the reason
        return JSONResponse({"ready": False}, status_code=503)
    return JSONResponse({"ready": True})


@router.get("/models/{name}", summary="Model metadata", responses=OIP_READ_ERRORS)
@router.get(
    "/models/{name}/versions/{version}", summary="Model metadata, one version", responses=OIP_READ_ERRORS
)
async def model_metadata(request: Request, services: ServicesDep) -> JSONResponse:
    plane = services.open_inference
    return JSONResponse(plane.model_metadata(resolve(request, plane, route_path(request.scope))))


@router.get("/models/{name}/ready", summary="Model readiness", responses=OIP_READ_ERRORS)
@router.get(
    "/models/{name}/versions/{version}/ready",
    summary="Model readiness, one version",
    responses=OIP_READ_ERRORS,
)
async def model_ready(request: Request, services: ServicesDep) -> JSONResponse:
    plane = services.open_inference
    path = route_path(request.scope)
    served = resolve(request, plane, path[: -len("/ready")])
    return JSONResponse({"name": plane.model_name(served.model), "ready": True})


def _media_type(value: str | None) -> None:
    media = (value or "application/json").split(";", 1)[0].strip().lower()
    if media not in _ACCEPTED_MEDIA:
        raise UnsupportedMediaType(
            "send the request as application/json (or, with binary tensors, application/octet-stream)"
        )


@router.post(
    "/models/{name}/infer",
    summary="Inference",
    responses=OIP_ERRORS,
    openapi_extra=request_body(INFER_REQUEST),
)
@router.post(
    "/models/{name}/versions/{version}/infer", summary="Inference, one version", responses=OIP_ERRORS
)
async def infer(request: Request) -> Response:
    services = services_of(request)
    plane = services.open_inference
    path = route_path(request.scope)
    served = resolve(request, plane, path[: -len("/infer")])
    headers = request.headers
    _media_type(headers.get("content-type"))
    require_identity_encoding(headers.get("content-encoding"))
    body = await read_body(request, services.settings.max_body_bytes)
    header_length = headers.get(HEADER_LENGTH)
    if len(body) <= INLINE_READ_MAX_BYTES:
        decoded = decode_request(body, header_length)
    else:
        decoded = await run_in_threadpool(decode_request, body, header_length)
    answer = await plane.infer(served, decoded.tensors)
    version = served.model.source.version
    encoded = encode_response(
        answer.model_name,
        version,
        decoded.tensors.id if decoded.tensors.id is not None else current_request_id.get(),
        answer.outputs,
        True if decoded.all_binary else decoded.binary_outputs,
    )
    response_headers = dict(served.headers)
    if encoded.header_length is not None:
        response_headers[HEADER_LENGTH] = str(encoded.header_length)
    answered(request, services, served, answer.features, answer.prediction)
    return Response(encoded.body, media_type=encoded.media_type, headers=response_headers)
