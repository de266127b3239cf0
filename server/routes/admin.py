"""Following the registry from the outside: webhooks, forced reloads, the registry's versions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from server.codecs.body import read_body
from server.errors import ServingError
from server.live.delivery_ledger import LedgerUnavailable
from server.live.loading import one_line
from server.live.webhooks import WebhookRejected, alias_event
from server.routes.dependencies import ServicesDep
from server.routes.openapi import READ_ERRORS, error_responses
from server.routes.schemas import ErrorBody, ReloadResponse, VersionsResponse, WebhookResponse

router = APIRouter(tags=["registry"])

WEBHOOK_BODY_LIMIT = 64 * 1024
WEBHOOK_ERRORS = error_responses(401, 403, 413) | {
    503: {"model": ErrorBody, "description": "The record of received deliveries (Redis) is unreachable"}
}


class WebhooksDisabled(ServingError):
    status_code = 403
    error_code = "WEBHOOKS_DISABLED"


class InvalidDelivery(ServingError):
    status_code = 401
    error_code = "INVALID_DELIVERY"


class LedgerDown(ServingError):
    """The shared record of received deliveries cannot be reached: refuse rather than risk a replay
    (MLflow retries a 503; polling follows the alias meanwhile)."""

    status_code = 503
    error_code = "WEBHOOK_LEDGER_UNAVAILABLE"


class NotARegistryModel(ServingError):
    status_code = 404
    error_code = "NOT_A_REGISTRY_MODEL"


class RegistryUnavailable(ServingError):
    status_code = 503
    error_code = "REGISTRY_UNAVAILABLE"


@router.post(
    "/webhooks/mlflow",
    response_model=WebhookResponse,
    summary="Receive MLflow's model_version_alias webhook deliveries",
    responses=WEBHOOK_ERRORS,
)
async def mlflow_webhook(request: Request, services: ServicesDep) -> JSONResponse:
    verifier = services.webhook_verifier
    if verifier is None:
        raise WebhooksDisabled("webhook deliveries are refused: MLFLOW_WEBHOOK_SECRET is not set")
    body = await read_body(request, WEBHOOK_BODY_LIMIT)
    try:
        await verifier.verify(request.headers, body)
        event = alias_event(body)
    except WebhookRejected as rejection:
        raise InvalidDelivery(f"delivery refused: {rejection}") from None
    except LedgerUnavailable as trouble:
        raise LedgerDown(f"delivery refused for now: {trouble}; retry later") from None
    if event is None:
        return JSONResponse({"status": "ignored", "reason": "not a model_version_alias event"})
    concerned = [
        follower
        for follower in services.followers
        if follower.reference is not None
        and (event.name, event.alias) == (follower.reference.name, follower.reference.alias)
    ]
    if not concerned:
        return JSONResponse({"status": "ignored", "reason": f"not {services.settings.model_uri}"})
    for follower in concerned:
        follower.nudge()
    return JSONResponse(
        {"status": "accepted", "reason": f"{event.action} {event.name}@{event.alias}"}, status_code=202
    )


@router.post(
    "/model/reload",
    response_model=ReloadResponse,
    summary="Check the registry now (admin)",
    responses=error_responses(401, 403, 429),
)
async def reload_model(services: ServicesDep) -> ReloadResponse:
    """The champion's outcome; the challenger, when there is one, is checked too."""
    outcome = await services.follower.check()
    if services.challenger is not None:
        await services.challenger.follower.check()
    return ReloadResponse(
        outcome=outcome.outcome,
        version=outcome.version,
        previous=outcome.previous,
        reason=outcome.reason,
        seconds=round(outcome.seconds, 3),
    )


@router.get(
    "/model/versions",
    response_model=VersionsResponse,
    summary="The registry's versions of this model",
    responses=READ_ERRORS | error_responses(404),
)
async def versions(services: ServicesDep) -> VersionsResponse:
    model = services.store.peek()
    name = model.source.name if model is not None else None
    if name is None:
        raise NotARegistryModel("the served model does not come from the model registry")
    try:
        rows = await run_in_threadpool(_versions, services.loader.client, name)
    except Exception as error:  # noqa: BLE001 - the registry's trouble, reported as such
        raise RegistryUnavailable(f"the registry did not answer: {one_line(error)}") from None
    live = model.source.version if model is not None else None
    return VersionsResponse(
        name=name, live_version=live, versions=[{**row, "live": row["version"] == live} for row in rows]
    )


def _versions(client: Any, name: str) -> list[dict[str, Any]]:
    aliases_by_version: dict[str, list[str]] = {}
    for alias, version in client.get_registered_model(name).aliases.items():
        aliases_by_version.setdefault(str(version), []).append(alias)
    found = client.search_model_versions(f"name = '{name}'")
    return [
        {
            "version": str(v.version),
            "aliases": sorted(aliases_by_version.get(str(v.version), [])),
            "status": v.status,
            "run_id": v.run_id,
            "created_at": v.creation_timestamp,
            "tags": dict(v.tags or {}),
        }
        for v in sorted(found, key=lambda v: int(v.version), reverse=True)
    ]
