"""/health (liveness: the process is up, and how following the registry goes) and /ping
(readiness: the model answers; a registry that cannot be reached does not make it unready)."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from server.dependencies import ServicesDep
from server.loading import one_line
from server.readiness import answers_example
from server.reloader import ReloadError
from server.schemas import HealthResponse, ReadinessResponse, RegistryBody, ReloadErrorBody

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse, summary="Liveness: the process is up")
async def health(services: ServicesDep) -> HealthResponse:
    model = services.store.peek()
    follower = services.follower
    return HealthResponse(
        status="ok",
        model_loaded=model is not None,
        model_version=model.source.version if model else None,
        model_uri=services.settings.model_uri or str(services.settings.model_path),
        uptime_seconds=round(time.time() - services.started_at, 3),
        registry=RegistryBody(
            following=services.settings.model_uri if follower.active else None,
            reachable=follower.status.reachable,
            last_check=follower.status.last_check,
            last_error=follower.status.last_error,
        ),
        last_reload_error=reload_error_body(services.reloader.last_error),
    )


def reload_error_body(error: ReloadError | None) -> ReloadErrorBody | None:
    return None if error is None else ReloadErrorBody(version=error.version, reason=error.reason, at=error.at)


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
