"""/metrics and /prometheus-metrics: the Prometheus text format (not counted as traffic)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from server.routes.dependencies import ServicesDep
from server.routes.openapi import error_responses

router = APIRouter(tags=["monitoring"])


_TEXT = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"}
}


@router.get("/metrics", summary="Prometheus metrics", responses=_TEXT | error_responses(401, 403))
@router.get(
    "/prometheus-metrics",
    summary="Prometheus metrics (the seed's path)",
    responses=_TEXT | error_responses(401, 403),
)
async def prometheus_metrics(services: ServicesDep) -> Response:
    exposition = services.exposition
    return Response(exposition.render(), media_type=exposition.content_type)
