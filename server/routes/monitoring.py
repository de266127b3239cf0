"""GET /model/drift (how the served versions' live inputs compare with their training data) and
GET /predictions (admin: the prediction log, newest first, to debug one request by its id)."""

from __future__ import annotations

import asyncio
import functools
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query

from server.errors import BadRequest, ServingError
from server.routes.dependencies import ServicesDep
from server.routes.monitoring_schemas import DriftResponse, PredictionsPage
from server.routes.openapi import READ_ERRORS, error_responses
from server.services import Monitoring

router = APIRouter(tags=["monitoring"])

SINCE_EXPECTED = "since: expected an ISO 8601 time or a duration such as 15m, 24h or 7d"
LOG_OFF = "PREDICTION_LOG_URL is not set: there is no prediction log, and drift is computed from it"
_DURATION = re.compile(r"(?P<amount>[0-9]{1,9})(?P<unit>[smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class PredictionLogOff(ServingError):
    status_code = 409
    error_code = "PREDICTION_LOG_OFF"


@router.get("/model/drift", response_model=DriftResponse, responses=READ_ERRORS)
async def drift(services: ServicesDep) -> dict[str, Any]:
    """Per served version: PSI and Kolmogorov-Smirnov per feature over the live window
    (DRIFT_WINDOW), and each predicted class's share against training; or why there are none."""
    if services.monitoring is None:
        return {"enabled": False, "reason": LOG_OFF, "versions": []}
    return services.monitoring.drift.report()


@router.get(
    "/predictions",
    response_model=PredictionsPage,
    summary="The prediction log, newest first (admin)",
    responses=error_responses(400, 401, 403, 409, 422, 429),
)
async def predictions(
    services: ServicesDep,
    since: Annotated[
        str | None, Query(description="An ISO 8601 time, or how long ago: `15m`, `24h`, `7d`.")
    ] = None,
    version: Annotated[str | None, Query(max_length=64)] = None,
    request_id: Annotated[str | None, Query(max_length=128)] = None,
    before: Annotated[
        int | None, Query(ge=1, le=2**62, description="Rows older than this id (paging).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    monitoring = _monitoring(services.monitoring)
    from server.observe.prediction_log.queries import recent

    # On the drift thread: an admin's query never takes a connection the writer needs.
    page = await asyncio.get_running_loop().run_in_executor(
        monitoring.drift_thread,
        functools.partial(
            recent,
            monitoring.log.engine,
            since=_since(since),
            version=version,
            request_id=request_id,
            before=before,
            limit=limit,
        ),
    )
    following = None
    if page.next_before is not None:
        query = {"since": since, "version": version, "request_id": request_id, "limit": limit}
        query = {k: v for k, v in query.items() if v is not None}
        following = "/predictions?" + urlencode({**query, "before": page.next_before})
    return {"predictions": page.rows, "next": following}


def _monitoring(monitoring: Monitoring | None) -> Monitoring:
    if monitoring is None:
        raise PredictionLogOff(LOG_OFF)
    return monitoring


def _since(text: str | None) -> datetime | None:
    """`since` as a UTC time: a duration back from now, or an ISO 8601 time (UTC when it has no zone)."""
    if text is None:
        return None
    try:
        duration = _DURATION.fullmatch(text.strip())
        if duration is not None:
            return datetime.now(UTC) - timedelta(**{_UNITS[duration["unit"]]: int(duration["amount"])})
        moment = datetime.fromisoformat(text.strip())
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):  # not a time, or one before the year 1
        raise BadRequest(SINCE_EXPECTED) from None
