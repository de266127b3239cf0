"""Pure ASGI middleware: request ids and last-resort errors, and prediction traffic accounting.

Pure ASGI (not `BaseHTTPMiddleware`) because these run on every request of the hot path.
"""

from __future__ import annotations

import logging
import time

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.edge.error_handlers import ERROR_CODE_STATE
from server.edge.request_context import (
    REQUEST_ID_HEADER,
    STARTED_STATE,
    VARIANT_STATE,
    accept_or_generate,
    current_request_id,
)
from server.edge.route_path import route_path
from server.edge.route_policy import TRAFFIC_PATHS, is_traffic, policy_for, route_template
from server.errors import InternalError
from server.observe import metrics

logger = logging.getLogger("server.requests")

_HEADER_BYTES = REQUEST_ID_HEADER.encode()


class RequestContextMiddleware:
    """Gives each request an id (the client's `X-Request-ID` or a new one), echoes it, and turns
    anything unexpected into a logged 500 that carries the id and nothing else."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == _HEADER_BYTES:
                incoming = value.decode("latin-1")
                break
        request_id = accept_or_generate(incoming)
        token = current_request_id.set(request_id)
        encoded_id = request_id.encode()
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), (_HEADER_BYTES, encoded_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # repr: a path may carry percent-decoded line breaks that would forge log lines.
            logger.exception("unhandled error on %s %r", scope.get("method"), scope.get("path"))
            if started:
                raise
            scope.setdefault("state", {})[ERROR_CODE_STATE] = InternalError.error_code
            error = InternalError()
            shaped = error.open_inference_body() if policy_for(route_path(scope)).open_inference else None
            body = orjson.dumps(shaped or error.body(request_id))
            await send_with_id(
                {
                    "type": "http.response.start",
                    "status": error.status_code,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
        finally:
            current_request_id.reset(token)


class PredictionTrafficMiddleware:
    """Accounts for prediction traffic only: requests, failures (by error code), latency and
    requests in flight. Health checks, docs and `/metrics` are not traffic."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        metrics.bind_endpoints(TRAFFIC_PATHS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_template(route_path(scope))
        if not is_traffic(path):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        scope.setdefault("state", {})[STARTED_STATE] = start
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, capture)
        finally:
            metrics.IN_FLIGHT.dec()
            state = scope.get("state", {})
            reason = state.get(ERROR_CODE_STATE) if status >= 400 else None
            variant = state.get(VARIANT_STATE, metrics.NO_VARIANT)
            metrics.record_request(path, time.perf_counter() - start, status, reason, variant)
