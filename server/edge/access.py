"""Access control and load shedding, as pure ASGI middleware on both the fast lane and FastAPI.

`AccessMiddleware`: each route's scope (`server.edge.route_policy`), the caller's credential, the
caller's rate limit, and a limit on failed credentials per client address.
`AdmissionMiddleware`: at most MAX_CONCURRENT_REQUESTS prediction requests in progress (more get
503 with Retry-After at once) and none longer than REQUEST_TIMEOUT_SECONDS (504). Refusals use the
one error body, with the request id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.edge.auth import Authenticator, Principal, Unauthenticated, authorize
from server.edge.error_handlers import ERROR_CODE_STATE, error_response
from server.edge.in_flight import InFlight
from server.edge.rate_limit import FailedCredentialLimiter, Limiter
from server.edge.request_context import CALLER_STATE
from server.edge.route_path import route_path
from server.edge.route_policy import is_traffic, required_scope
from server.errors import Overloaded, RateLimited, RequestTimeout, ServingError


async def _refuse(scope: Scope, receive: Receive, send: Send, error: ServingError) -> None:
    scope.setdefault("state", {})[ERROR_CODE_STATE] = error.error_code
    await error_response(error, route_path(scope))(scope, receive, send)


@dataclass(frozen=True)
class AccessControl:
    """Credentials, scopes and rate limits, asked the same way by HTTP's `AccessMiddleware` and
    gRPC's call guard (`server.grpc.guard`)."""

    authenticator: Authenticator | None
    limiter: Limiter | None
    failed_credentials: FailedCredentialLimiter | None = None

    async def admit(self, headers: Mapping[str, str], address: str, scope: str) -> str | None:
        """The authenticated caller's name (None with authentication off), once its credential
        passes, has `scope`, and its rate limit (by name, else by `address`) has room; raises
        the refusal otherwise."""
        name = None
        if self.authenticator is not None:
            principal = await self._authenticate(self.authenticator, headers, address)
            authorize(principal, scope)
            name = key = principal.name
        else:
            key = f"address:{address}"
        if self.limiter is not None and scope != "metrics":
            decision = await self.limiter.acquire(key)
            if not decision.allowed:
                raise RateLimited(decision.retry_after)
        return name

    async def _authenticate(
        self, authenticator: Authenticator, headers: Mapping[str, str], address: str
    ) -> Principal:
        """The caller, unless the credential fails or its address failed too often lately."""
        failures = self.failed_credentials
        if failures is None:
            return authenticator.authenticate(headers)
        blocked = failures.blocked(address)
        if blocked is not None:
            raise TooManyFailures(blocked)
        try:
            return authenticator.authenticate(headers)
        except Unauthenticated:
            blocked = await failures.record_failure(address)
            if blocked is not None:
                raise TooManyFailures(blocked) from None
            raise


class AccessMiddleware:
    """Authenticates and rate-limits every request to a route that needs a scope."""

    def __init__(
        self,
        app: ASGIApp,
        authenticator: Authenticator | None,
        limiter: Limiter | None,
        metrics_auth: bool,
        failed_credentials: FailedCredentialLimiter | None = None,
    ) -> None:
        self.app = app
        self._access = AccessControl(authenticator, limiter, failed_credentials)
        self._metrics_auth = metrics_auth and authenticator is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        required = required_scope(route_path(scope), self._metrics_auth, scope["method"])
        if required is None:
            await self.app(scope, receive, send)
            return
        try:
            caller = await self._access.admit(Headers(scope=scope), client_address(scope), required)
        except ServingError as error:
            await _refuse(scope, receive, send, error)
            return
        if caller is not None:
            scope.setdefault("state", {})[CALLER_STATE] = caller
        await self.app(scope, receive, send)


class TooManyFailures(RateLimited):
    """Too many failed credentials from one client address: it waits before it may try again."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after, "too many failed credentials from this address")


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


class AdmissionMiddleware:
    """Bounds the prediction requests in progress, and how long each may take."""

    def __init__(
        self, app: ASGIApp, max_concurrent: int, timeout: float, in_flight: InFlight | None = None
    ) -> None:
        self.app = app
        self._max_concurrent = max_concurrent
        self._timeout = timeout
        self._in_flight = in_flight if in_flight is not None else InFlight()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_traffic(route_path(scope)):
            await self.app(scope, receive, send)
            return
        if self._in_flight.count >= self._max_concurrent:
            await _refuse(scope, receive, send, Overloaded())
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        self._in_flight.count += 1
        try:
            async with asyncio.timeout(self._timeout):
                await self.app(scope, receive, watch)
        except TimeoutError:
            if started:
                raise
            await _refuse(scope, receive, send, RequestTimeout(f"no answer within {self._timeout:g} s"))
        finally:
            self._in_flight.count -= 1
