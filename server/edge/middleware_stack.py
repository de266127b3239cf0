"""The middleware every request passes, outermost first, built once from the settings and put
around both the fast lane and FastAPI, so the two paths can never drift apart."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from server.edge.access import AccessMiddleware, AdmissionMiddleware
from server.edge.auth import Authenticator
from server.edge.in_flight import InFlight
from server.edge.lingering import LingeringBodyMiddleware
from server.edge.middleware import PredictionTrafficMiddleware, RequestContextMiddleware
from server.edge.rate_limit import FailedCredentialLimiter, Limiter
from server.settings import ServerSettings


def build_stack(
    settings: ServerSettings,
    authenticator: Authenticator | None,
    limiter: Limiter | None,
    in_flight: InFlight,
    failed_credentials: FailedCredentialLimiter | None = None,
) -> list[Middleware]:
    # Outermost: every early answer, whichever layer gives it, is completed only after the
    # client's unread body is discarded (server/edge/lingering.py).
    stack = [
        Middleware(LingeringBodyMiddleware, max_discard_bytes=settings.max_discard_bytes),
        Middleware(RequestContextMiddleware),
    ]
    if settings.cors_origin_list:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origin_list,
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type", "x-api-key", "x-request-id", "x-routing-key"],
                expose_headers=["x-request-id", "x-model-version", "x-model-variant", "retry-after"],
            )
        )
    stack.append(Middleware(PredictionTrafficMiddleware))
    if authenticator is not None or limiter is not None:
        stack.append(
            Middleware(
                AccessMiddleware,
                authenticator=authenticator,
                limiter=limiter,
                metrics_auth=settings.metrics_auth,
                failed_credentials=failed_credentials,
            )
        )
    stack.append(
        Middleware(
            AdmissionMiddleware,
            max_concurrent=settings.max_concurrent_requests,
            timeout=settings.request_timeout_seconds,
            in_flight=in_flight,
        )
    )
    return stack


def wrap(stack: list[Middleware], app: ASGIApp) -> ASGIApp:
    """`app` inside `stack` (the first entry outermost), as Starlette would build it."""
    for middleware in reversed(stack):
        app = middleware.cls(app, *middleware.args, **middleware.kwargs)
    return app
