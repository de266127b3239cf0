"""/metrics and /prometheus-metrics: the Prometheus text format (not counted as traffic)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from server.dependencies import ServicesDep

router = APIRouter(tags=["monitoring"])


@router.get("/metrics", summary="Prometheus metrics")
@router.get("/prometheus-metrics", summary="Prometheus metrics (the seed's path)")
async def prometheus_metrics(services: ServicesDep) -> Response:
    exposition = services.exposition
    return Response(exposition.render(), media_type=exposition.content_type)
