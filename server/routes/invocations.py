"""/invocations: MLflow's scoring protocol, a drop-in for `mlflow models serve`."""

from __future__ import annotations

from io import StringIO

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from model_wrapper import Prediction
from server.codecs.body import read_body, require_identity_encoding
from server.codecs.limits import INLINE_READ_MAX_BYTES
from server.codecs.mlflow_protocol import FastRequest, media_type_of, model_failed
from server.codecs.mlflow_scoring import write_predictions
from server.codecs.per_model import invocation_codec, prediction_encoder
from server.inference.predictor import ModelFailed, check_row_count
from server.live.loaded_model import LoadedModel
from server.routes.answers import answered, log_answer, logs_this
from server.routes.dependencies import services_of
from server.routes.openapi import INVOCATIONS_REQUEST, PREDICTION_ERRORS, request_body
from server.routes.predictions import choose_variant
from server.routes.schemas import InvocationsResponse
from server.runtimes.base import ClassifierRuntime

router = APIRouter(tags=["mlflow"])


def mlflow_answer(model: LoadedModel, runtime: ClassifierRuntime, prediction: Prediction) -> bytes:
    """The runtime's answer, byte for byte what MLflow would send for this flavour. The contract's
    records are encoded in C, unless a probability is not a number (inputs far outside the
    training range): MLflow writes those as `NaN`, which no JSON encoder but Python's own
    produces, so those rare answers, and every other flavour's, go through MLflow's encoder."""
    if runtime.answers_records and np.isfinite(prediction.probabilities).all():
        return prediction_encoder(model).mlflow(prediction)
    out = StringIO()
    write_predictions(runtime.mlflow_output(prediction), out)
    return out.getvalue().encode()


@router.post(
    "/invocations",
    summary="MLflow scoring protocol",
    description="JSON (`dataframe_split`, `dataframe_records`, `instances`, `inputs`, with optional "
    "`params`), CSV (`text/csv`) or Parquet (`application/vnd.apache.parquet`), as `mlflow models serve`.",
    response_model=InvocationsResponse,
    responses=PREDICTION_ERRORS,
    openapi_extra=request_body(INVOCATIONS_REQUEST),
)
async def invocations(request: Request) -> Response:
    services = services_of(request)
    served = choose_variant(request, services.router)
    model = served.model
    media_type = media_type_of(request.headers.get("content-type"))
    require_identity_encoding(request.headers.get("content-encoding"))
    body = await read_body(request, services.settings.max_body_bytes)
    codec = invocation_codec(model)
    if len(body) <= INLINE_READ_MAX_BYTES:
        decoded = codec.decode(body, media_type)
    else:  # only junk is this large: the compiled readers' tens of milliseconds leave the loop
        decoded = await run_in_threadpool(codec.decode, body, media_type)
    max_rows = services.settings.max_batch_size
    runtime = model.runtime
    if isinstance(decoded, FastRequest) and runtime is not None:  # the codec reads rows only for one
        check_row_count(len(decoded.features), max_rows)
        try:
            prediction = await services.inference.score(runtime, decoded.features, served.labels)
        except ModelFailed:
            raise model_failed() from None
        content = mlflow_answer(model, runtime, prediction)
        answered(request, services, served, decoded.features, prediction)
    else:
        # MLflow's own parsers read these rows (CSV, Parquet, tensors, `params`, a model without a
        # runtime): the shadow has no copy of them; the log gets what can be had of them.
        logged = logs_this(services)
        answer = await services.inference.predict_mlflow(model, codec, decoded, max_rows, keep_rows=logged)
        content = answer.body
        services.router.answered_unread(served)
        if logged:
            log_answer(request, services, served, answer.features, answer.classes)
    return Response(content, media_type="application/json", headers=served.headers)
