"""/health (liveness: the process is up) and /ping (readiness: the model answers)."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from server.dependencies import ServicesDep
from server.loading import one_line
from server.readiness import answers_example
from server.schemas import HealthResponse, ReadinessResponse

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse, summary="Liveness: the process is up")
async def health(services: ServicesDep) -> HealthResponse:
    model = services.store.peek()
    return HealthResponse(
        status="ok",
        model_loaded=model is not None,
        model_version=model.source.version if model else None,
        model_uri=services.settings.model_uri or str(services.settings.model_path),
        uptime_seconds=round(time.time() - services.started_at, 3),
    )


@router.get(
    "/ping",
    response_model=ReadinessResponse,
    summary="Readiness: 200 only when a model is loaded and answers a prediction",
    responses={503: {"model": ReadinessResponse, "description": "Not ready"}},
)
async def ping(services: ServicesDep) -> JSONResponse:
    model = services.store.peek()
    if model is None:
        return _not_ready("no model is loaded")
    try:
        await run_in_threadpool(answers_example, model)
    except Exception as error:  # noqa: BLE001 - any failure means "not ready", with its reason
        return _not_ready(f"the model does not answer its input example: {one_line(error)}")
    return JSONResponse(ReadinessResponse(status="ready", model_version=model.source.version).model_dump())


def _not_ready(reason: str) -> JSONResponse:
    return JSONResponse(ReadinessResponse(status="unavailable", reason=reason).model_dump(), status_code=503)
