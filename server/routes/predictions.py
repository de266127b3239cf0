"""/predict and /batch-predict: strict JSON records, answered with classes and probabilities.

Hot routes take the request alone (no dependency injection), so the fast lane
(`server.edge.fast_lane`) can call the very same functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from model_wrapper import Prediction
from server.codecs.body import read_body, require_identity_encoding, require_json
from server.codecs.limits import INLINE_CHECK_MAX_BYTES, INLINE_READ_MAX_BYTES
from server.codecs.per_model import prediction_encoder, record_codec
from server.codecs.responses import generic_body
from server.edge.request_context import CALLER_STATE, VARIANT_STATE
from server.inference.predictor import refuse_unscorable
from server.inference.variants import ROUTING_KEY_HEADER, Served, VariantRouter
from server.routes.answers import answered
from server.routes.dependencies import services_of
from server.routes.openapi import BATCH_REQUEST, PREDICT_REQUEST, PREDICTION_ERRORS, request_body
from server.routes.schemas import BatchPredictResponse, PredictResponse

router = APIRouter(tags=["predictions"])


def routing_key(request: Request) -> str | None:
    """The request's routing key: `X-Routing-Key`, else the authenticated caller, else none."""
    return request.headers.get(ROUTING_KEY_HEADER) or request.scope.get("state", {}).get(CALLER_STATE)


def noted(request: Request, served: Served) -> Served:
    """`served`, noted on the request as the variant that answers it (for the traffic metrics)."""
    request.scope.setdefault("state", {})[VARIANT_STATE] = served.labels
    return served


def choose_variant(request: Request, router: VariantRouter) -> Served:
    """The variant that answers this request, by its routing key (looked for only when there is
    a challenger), noted on the request."""
    return noted(request, router.choose(routing_key(request) if router.configured else None))


async def _json_body(request: Request, limit: int) -> bytes:
    require_json(request.headers.get("content-type"))
    require_identity_encoding(request.headers.get("content-encoding"))
    return await read_body(request, limit)


Reader = Callable[..., np.ndarray | None]


def fast_features(fast: Reader, body: bytes, *args: Any) -> np.ndarray | None:
    """The compiled readers' rows, on the event loop, for a body small enough that they are cheap
    (INLINE_READ_MAX_BYTES: every body of MAX_BATCH_SIZE plain records is far smaller); None
    when they decline it, or when it is larger."""
    return fast(body, *args) if len(body) <= INLINE_READ_MAX_BYTES else None


async def declined_features(fast: Reader, checked: Reader, body: bytes, *args: Any) -> np.ndarray:
    """The rows of a body `fast_features` did not read: the field-by-field check (`checked`),
    inline up to INLINE_CHECK_MAX_BYTES, on a worker thread beyond (with the compiled readers
    first when they have not run yet), so one large bad body (say, a record of 700,000 unknown
    keys) never stalls the other requests."""
    if len(body) > INLINE_READ_MAX_BYTES:
        return await run_in_threadpool(_read, fast, checked, body, *args)
    if len(body) <= INLINE_CHECK_MAX_BYTES:
        return checked(body, *args)
    return await run_in_threadpool(checked, body, *args)


def _read(fast: Reader, checked: Reader, body: bytes, *args: Any) -> np.ndarray:
    rows = fast(body, *args)
    return rows if rows is not None else checked(body, *args)


def _respond(served: Served, result: Prediction | list[Any], *, single: bool) -> Response:
    model = served.model
    version = model.source.version
    if isinstance(result, Prediction):
        refuse_unscorable(result, single=single)
        encoder = prediction_encoder(model)
        content = encoder.single(result, version) if single else encoder.batch(result, version)
    else:
        content = generic_body(result, version, single=single)
    return Response(content, media_type="application/json", headers=served.headers)


@router.post(
    "/predict",
    summary="Predict one record",
    response_model=PredictResponse,
    responses=PREDICTION_ERRORS,
    openapi_extra=request_body(PREDICT_REQUEST),
)
async def predict(request: Request) -> Response:
    services = services_of(request)
    served = choose_variant(request, services.router)
    model = served.model
    body = await _json_body(request, services.settings.max_body_bytes)
    codec = record_codec(model)
    features = fast_features(codec.fast_single, body)
    if features is None:
        features = await declined_features(codec.fast_single, codec.checked_single, body)
    answer = await services.inference.predict(model, features, served.labels)
    response = _respond(served, answer, single=True)
    answered(request, services, served, features, answer)
    return response


@router.post(
    "/batch-predict",
    summary="Predict up to MAX_BATCH_SIZE records",
    response_model=BatchPredictResponse,
    responses=PREDICTION_ERRORS,
    openapi_extra=request_body(BATCH_REQUEST),
)
async def batch_predict(request: Request) -> Response:
    services = services_of(request)
    served = choose_variant(request, services.router)
    model = served.model
    body = await _json_body(request, services.settings.max_body_bytes)
    codec = record_codec(model)
    max_rows = services.settings.max_batch_size
    features = fast_features(codec.fast_batch, body, max_rows)
    if features is None:
        features = await declined_features(codec.fast_batch, codec.checked_batch, body, max_rows)
    answer = await services.inference.predict(model, features, served.labels)
    response = _respond(served, answer, single=False)
    answered(request, services, served, features, answer)
    return response
