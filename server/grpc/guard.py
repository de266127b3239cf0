"""What every gRPC call passes, as every HTTP request passes the edge middleware: a request id
(the client's `x-request-id` metadata, or a new one; sent back in the trailing metadata), the
credential its method's scope needs (`authorization: Bearer ...` or `x-api-key` metadata, with
the failed-credential limit per peer address), the caller's rate limit, and, for inference,
admission (MAX_CONCURRENT_REQUESTS shared with HTTP, REQUEST_TIMEOUT_SECONDS) and the traffic
metrics under `protocol="grpc"`. A `ServingError` ends the call with the matching status code
and its message; anything else with INTERNAL and the request id alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import grpc
from google.protobuf.message import DecodeError, Message
from starlette.concurrency import run_in_threadpool

from server.codecs.limits import INLINE_READ_MAX_BYTES
from server.edge.access import AccessControl
from server.edge.request_context import accept_or_generate, current_request_id
from server.edge.route_policy import grpc_policy
from server.errors import InternalError, MalformedJson, Overloaded, RequestTimeout, ServingError
from server.observe import metrics
from server.services import Services

logger = logging.getLogger("server.grpc")

REQUEST_ID_KEY = "x-request-id"
# What a cancelled call is counted as (nginx's "client closed request").
CANCELLED_STATUS = 499

# The gRPC status each HTTP status of a `ServingError` becomes.
STATUS_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


@dataclass(slots=True)
class Call:
    """One call's facts, for its handler: metadata (lower-case keys, text values), the caller
    once authenticated, when it started, and the variant that answered (for the metrics)."""

    method: str
    metadata: dict[str, str]
    started: float
    caller: str | None = None
    variant: tuple[str, str] = metrics.NO_VARIANT
    trailing: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Any, Call], Awaitable[Any]]


async def _parse(request_class: type[Message], raw: bytes) -> Any:
    """The message in `raw`; a large one is parsed off the event loop, as large HTTP bodies are."""
    try:
        if len(raw) <= INLINE_READ_MAX_BYTES:
            return request_class.FromString(raw)
        return await run_in_threadpool(request_class.FromString, raw)
    except DecodeError:
        raise MalformedJson(f"the message is not a valid {request_class.DESCRIPTOR.name}") from None


def peer_address(peer: str) -> str:
    """The host of a gRPC peer string (`ipv4:127.0.0.1:5000`; `ipv6:%5B::1%5D:5000`, which grpcio
    percent-encodes), without its port: limits per address must not see a new address per
    connection."""
    kind, _, rest = unquote(peer).partition(":")
    if kind == "ipv6" and rest.startswith("[") and "]" in rest:
        return rest[1 : rest.index("]")]
    if kind in ("ipv4", "ipv6"):
        return rest.rsplit(":", 1)[0]
    return rest or "unknown"


class CallGuard:
    """Wraps each method's handler in what its route policy says it needs."""

    def __init__(self, services: Services) -> None:
        settings = services.settings
        self._access = AccessControl(services.authenticator, services.limiter, services.failed_credentials)
        self._in_flight = services.in_flight
        self._max_concurrent = settings.max_concurrent_requests
        self._timeout = settings.request_timeout_seconds

    def wrap(
        self, method: str, handler: Handler, request_class: type[Message]
    ) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[Any]]:
        """The handler for `method`, taking the message's bytes: they are parsed (as
        `request_class`) only once the call is admitted, so an unauthenticated caller costs no
        parse, and a message that is not one is the caller's mistake (INVALID_ARGUMENT)."""
        policy = grpc_policy(method)
        scope = policy.scope
        traffic = policy.traffic

        async def parsed_and_handled(raw: bytes, call: Call) -> Any:
            return await handler(await _parse(request_class, raw), call)

        async def guarded(request: bytes, context: grpc.aio.ServicerContext) -> Any:
            metadata = {
                key.lower(): value
                for key, value in context.invocation_metadata() or ()
                if isinstance(value, str)
            }
            request_id = accept_or_generate(metadata.get(REQUEST_ID_KEY))
            token = current_request_id.set(request_id)
            call = Call(method, metadata, time.perf_counter())
            failure: ServingError | None = None
            status, reason = 200, None
            try:
                if scope is not None:
                    await self._admit(call, scope, context.peer())
                if traffic:
                    response = await self._admitted(parsed_and_handled, request, call)
                else:
                    response = await parsed_and_handled(request, call)
            except ServingError as error:
                failure, status, reason = error, error.status_code, error.error_code
            except asyncio.CancelledError:  # the client cancelled, or its deadline passed
                status, reason = CANCELLED_STATUS, "CANCELLED"
                raise
            except Exception:
                logger.exception("unhandled error on gRPC %s", method)
                failure, status, reason = InternalError(), 500, InternalError.error_code
            finally:
                current_request_id.reset(token)
                if traffic:
                    metrics.record_request(
                        method, time.perf_counter() - call.started, status, reason, call.variant
                    )
            trailing = ((REQUEST_ID_KEY, request_id), *call.trailing)
            if failure is None:
                context.set_trailing_metadata(trailing)
                return response
            code = STATUS_CODES.get(failure.status_code, grpc.StatusCode.INTERNAL)
            await context.abort(code, failure.message, trailing_metadata=trailing)
            return None  # abort raises; this line only satisfies the type checker

        return guarded

    async def _admit(self, call: Call, scope: str, peer: str) -> None:
        call.caller = await self._access.admit(call.metadata, peer_address(peer), scope)

    async def _admitted(self, handler: Handler, request: Any, call: Call) -> Any:
        in_flight = self._in_flight
        if in_flight.count >= self._max_concurrent:
            raise Overloaded()
        in_flight.count += 1
        metrics.IN_FLIGHT.inc()
        try:
            async with asyncio.timeout(self._timeout):
                return await handler(request, call)
        except TimeoutError:
            raise RequestTimeout(f"no answer within {self._timeout:g} s") from None
        finally:
            in_flight.count -= 1
            metrics.IN_FLIGHT.dec()
