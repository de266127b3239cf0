"""The fast lane: POST /predict, /batch-predict, /invocations and the Open Inference Protocol's
and KServe V1's inference paths, dispatched ahead of FastAPI (by their route template).

FastAPI's per-request machinery (its error, telemetry and body-limit middleware, the exception
middleware, the exit stack, routing, the request-response wrapper) costs about as much CPU as a
single-row prediction itself. The three prediction endpoints need none of it: they read the raw
body, raise `ServingError`s, and return ready `Response`s. So `ServingApp` sends those requests
through the same request-id and metrics middleware straight to the same endpoint functions the
FastAPI routes call, and everything else (other paths, other methods, lifespan) through FastAPI.
The FastAPI routes stay declared: they are what the OpenAPI document describes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from server.edge.error_handlers import handle_serving_error
from server.edge.route_path import route_path
from server.edge.route_policy import FAST_LANE_PATHS, route_template
from server.errors import ServingError

Endpoint = Callable[[Request], Awaitable[Response]]


class EndpointDispatch:
    """The lane's innermost ASGI app: call the endpoint, answer `ServingError`s as FastAPI would."""

    def __init__(self, endpoints: Mapping[str, Endpoint]) -> None:
        self._endpoints = dict(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await self._endpoints[route_template(route_path(scope))](request)
        except ServingError as error:
            response = await handle_serving_error(request, error)
        await response(scope, receive, send)


class ServingApp(FastAPI):
    """FastAPI, with POST requests to the lane's paths served by `fast_lane` when it is set."""

    fast_lane: ASGIApp | None = None
    fast_paths: frozenset[str] = frozenset()

    def install_fast_lane(
        self, lane: Callable[[ASGIApp], ASGIApp], endpoints: Mapping[str, Endpoint]
    ) -> None:
        """Serve `endpoints` (path -> endpoint) through `lane` wrapped around a direct dispatch:
        exactly the paths the route policy sends down the fast lane."""
        if set(endpoints) != FAST_LANE_PATHS:
            raise ValueError(f"the fast lane serves {sorted(FAST_LANE_PATHS)}, not {sorted(endpoints)}")
        self.fast_lane = lane(EndpointDispatch(endpoints))
        self.fast_paths = frozenset(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.fast_lane is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and route_template(route_path(scope)) in self.fast_paths
        ):
            scope["app"] = self
            await self.fast_lane(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
