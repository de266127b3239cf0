"""KServe's V1 protocol, for the simple clients: model status and `:predict`.

`POST /v1/models/{name}:predict` answers `{"predictions": [...]}`, each row's predicted class
value, from the same variants, batcher, metrics and prediction log as every other route.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from server.codecs.body import read_body, require_identity_encoding, require_json
from server.codecs.kserve_v1 import decode_instances, encode_predictions
from server.codecs.limits import INLINE_CHECK_MAX_BYTES
from server.codecs.per_model import record_codec
from server.edge.route_path import route_path
from server.errors import MethodNotAllowed
from server.inference.open_inference import layouts_of
from server.inference.predictor import refuse_unscorable
from server.routes.answers import answered
from server.routes.dependencies import ServicesDep, services_of
from server.routes.open_inference import OIP_ERRORS, OIP_READ_ERRORS, resolve
from server.routes.openapi import V1_REQUEST, request_body

router = APIRouter(prefix="/v1", tags=["kserve v1"])


@router.get("/models/{name}", summary="Model status", responses=OIP_READ_ERRORS)
async def model_status(request: Request, services: ServicesDep) -> JSONResponse:
    plane = services.open_inference
    path = route_path(request.scope)
    if path.endswith(":predict"):  # FastAPI's path parameter takes `NAME:predict` as a name
        raise MethodNotAllowed("method not allowed here; allowed: POST", headers={"Allow": "POST"})
    served = resolve(request, plane, "/v2" + path[len("/v1") :])
    return JSONResponse({"name": plane.model_name(served.model), "ready": True})


@router.post(
    "/models/{name}:predict",
    summary="Predict (KServe V1)",
    responses=OIP_ERRORS,
    openapi_extra=request_body(V1_REQUEST),
)
async def predict(request: Request) -> Response:
    services = services_of(request)
    plane = services.open_inference
    path = route_path(request.scope).removesuffix(":predict")
    served = resolve(request, plane, "/v2" + path[len("/v1") :])
    model = served.model
    layouts = layouts_of(model)
    require_json(request.headers.get("content-type"))
    require_identity_encoding(request.headers.get("content-encoding"))
    body = await read_body(request, services.settings.max_body_bytes)
    max_rows = services.settings.max_batch_size
    codec = record_codec(model)
    if len(body) <= INLINE_CHECK_MAX_BYTES:
        features = decode_instances(body, codec, layouts.inputs, max_rows)
    else:
        features = await run_in_threadpool(decode_instances, body, codec, layouts.inputs, max_rows)
    assert model.runtime is not None  # layouts_of took the model
    prediction = await services.inference.score(model.runtime, features, served.labels)
    refuse_unscorable(prediction, single=False)
    answered(request, services, served, features, prediction)
    return Response(
        encode_predictions(prediction.classes), media_type="application/json", headers=served.headers
    )
