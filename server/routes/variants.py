"""/model/variants: the champion and the challenger side by side, and (admin) how they share
traffic."""

from __future__ import annotations

import math

from fastapi import APIRouter
from prometheus_client.metrics_core import Metric
from starlette.concurrency import run_in_threadpool

from server.errors import ServingError
from server.inference.split_policy import SplitPolicy
from server.live.model_store import CHALLENGER, CHAMPION, ModelStore, Variant
from server.live.reloader import Reloader
from server.observe.variant_stats import Buckets, ShadowNumbers, quantiles, shadow_numbers, variant_numbers
from server.routes.dependencies import ServicesDep
from server.routes.health import reload_error_body
from server.routes.openapi import READ_ERRORS, error_responses
from server.routes.schemas import (
    BucketBody,
    PolicyBody,
    ShadowBody,
    VariantBody,
    VariantsResponse,
    VariantStatsBody,
    VariantsUpdate,
)
from server.services import Services

router = APIRouter(prefix="/model", tags=["model"])


class NoChallenger(ServingError):
    status_code = 409
    error_code = "NO_CHALLENGER"


@router.get("/variants", response_model=VariantsResponse, responses=READ_ERRORS)
async def variants(services: ServicesDep) -> VariantsResponse:
    """Both variants: what each serves, and its numbers since its version was loaded (read from
    the metrics, every worker's files with several workers: off the event loop)."""
    return await run_in_threadpool(_describe, services)


@router.put(
    "/variants",
    response_model=VariantsResponse,
    summary="Change the challenger's mode or share (admin)",
    responses=error_responses(400, 401, 403, 409, 422, 429),
)
async def update_variants(update: VariantsUpdate, services: ServicesDep) -> VariantsResponse:
    """Applies here at once and in this server's other workers within half a second; a restart goes
    back to the settings."""
    if services.challenger is None:
        raise NoChallenger("no challenger is configured: set CHALLENGER_ALIAS or CHALLENGER_URI")
    holder = services.router.policy
    holder.refresh()  # another worker's change first, so a partial update keeps it
    current = holder.current
    holder.set(
        SplitPolicy(
            update.mode or current.mode, current.percent if update.percent is None else update.percent
        )
    )
    return await run_in_threadpool(_describe, services)


def _describe(services: Services) -> VariantsResponse:
    families = services.exposition.families()
    bodies = [_variant(CHAMPION, services.settings.model_uri, services.store, services.reloader, families)]
    challenger = services.challenger
    shadow = None
    policy = services.router.policy
    if challenger is not None:
        bodies.append(_variant(CHALLENGER, challenger.uri, challenger.store, challenger.reloader, families))
        model = challenger.store.peek()
        version = model.source.version if model is not None else None
        if version is not None:
            numbers = shadow_numbers(families, version)
            # A challenger shadowed earlier (the mode changed since) still shows its numbers.
            if policy.current.mode == "shadow" or numbers.seen:
                shadow = _shadow(version, numbers, challenger.shadow.waiting)
    return VariantsResponse(
        mode=policy.current.mode if challenger is not None else "off",
        percent=policy.current.percent if challenger is not None else 0.0,
        configured=(
            PolicyBody(mode=policy.configured.mode, percent=policy.configured.percent)
            if challenger is not None
            else None
        ),
        variants=bodies,
        shadow=shadow,
    )


def _variant(
    variant: Variant, uri: str, store: ModelStore, reloader: Reloader, families: list[Metric]
) -> VariantBody:
    model = store.peek()
    error = reload_error_body(reloader.last_error)
    if model is None:
        return VariantBody(
            variant=variant,
            state="refused" if error is not None else "absent",
            model_uri=uri,
            name=None,
            version=None,
            alias=None,
            run_id=None,
            loaded_at=None,
            runtime=None,
            last_reload_error=error,
            stats=None,
        )
    source = model.source
    numbers = variant_numbers(families, variant, source.version or "")
    return VariantBody(
        variant=variant,
        state="serving",
        model_uri=uri,
        name=source.name,
        version=source.version,
        alias=source.alias,
        run_id=source.run_id,
        loaded_at=model.loaded_at,
        runtime=model.runtime_name,
        last_reload_error=error,
        stats=VariantStatsBody(
            requests=round(numbers.requests),
            errors=round(numbers.errors),
            rows=round(numbers.rows),
            classes={name: round(count) for name, count in numbers.classes.items()},
            latency_seconds=quantiles(numbers.latency_buckets),
            latency_buckets=_buckets(numbers.latency_buckets),
        ),
    )


def _shadow(version: str, numbers: ShadowNumbers, waiting: int) -> ShadowBody:
    compared = numbers.rows_compared
    return ShadowBody(
        version=version,
        requests={outcome: round(count) for outcome, count in numbers.requests.items()},
        waiting=waiting,
        rows_compared=round(compared),
        same_class=round(numbers.same_class),
        agreement=numbers.same_class / compared if compared else None,
        probability_difference=quantiles(numbers.difference_buckets),
        probability_difference_buckets=_buckets(numbers.difference_buckets),
    )


def _buckets(buckets: Buckets) -> list[BucketBody]:
    return [
        BucketBody(le="+Inf" if math.isinf(bound) else bound, count=round(count)) for bound, count in buckets
    ]
