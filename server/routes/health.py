"""/health (liveness: the process is up) and /ping (readiness: the model answers; a registry that
cannot be reached does not make it unready). Both are open to probes, so both say little."""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from server.live.loading import one_line
from server.live.readiness import answers_example
from server.live.reloader import ReloadError
from server.routes.dependencies import ServicesDep
from server.routes.schemas import HealthResponse, ReadinessResponse, RegistryBody, ReloadErrorBody
from server.services import Services

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse, summary="Liveness: the process is up")
async def health(services: ServicesDep) -> HealthResponse:
    model = services.store.peek()
    return HealthResponse(
        status="ok",
        model_loaded=model is not None,
        model_version=model.source.version if model else None,
        uptime_seconds=round(time.time() - services.started_at, 3),
    )


def registry_body(services: Services) -> RegistryBody:
    """How following the registry goes (for /model/metadata)."""
    follower = services.follower
    return RegistryBody(
        following=services.settings.model_uri if follower.active else None,
        reachable=follower.status.reachable,
        last_check=follower.status.last_check,
        last_error=follower.status.last_error,
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
    except Exception as error:  # noqa: BLE001 - any failure means "not ready"
        # The probe is open to anyone: the model's own words go to the log, not to the caller.
        logger.warning(
            "not ready: version %s fails its input example: %s", model.source.version, one_line(error)
        )
        return _not_ready("the model does not answer its input example")
    return JSONResponse(ReadinessResponse(status="ready", model_version=model.source.version).model_dump())


def _not_ready(reason: str) -> JSONResponse:
    return JSONResponse(ReadinessResponse(status="unavailable", reason=reason).model_dump(), status_code=503)
