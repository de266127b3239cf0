"""One handler map turning every client error into the one error body (see `server.errors`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from server.edge.request_context import current_request_id
from server.edge.route_path import route_path
from server.edge.route_policy import policy_for
from server.errors import InvalidInput, MethodNotAllowed, NotFound, Problem, ServingError

ERROR_CODE_STATE = "error_code"


def error_response(error: ServingError, path: str | None = None) -> Response:
    """The JSON answer for `error` to a request for `path`: the Open Inference Protocol's shape on
    its paths, else the server's own with the request id of the request being served."""
    if path is not None and policy_for(path).open_inference:
        body = error.open_inference_body()
    else:
        body = error.body(current_request_id.get())
    return Response(
        orjson.dumps(body),
        status_code=error.status_code,
        media_type="application/json",
        headers=error.headers,
    )


async def handle_serving_error(request: Request, error: Exception) -> Response:
    """The answer to a `ServingError`; notes its code on the request for the metrics middleware."""
    assert isinstance(error, ServingError)
    setattr(request.state, ERROR_CODE_STATE, error.error_code)
    return error_response(error, route_path(request.scope))


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    # The path and method are the client's text: the answer names neither (see /openapi.json).
    if error.status_code == 404:
        mapped: ServingError = NotFound("no endpoint at this path")
    elif error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "")
        mapped = MethodNotAllowed(
            f"method not allowed here; allowed: {allowed}" if allowed else "method not allowed here",
            headers=dict(error.headers or {}),
        )
    else:
        mapped = ServingError(
            str(error.detail), status_code=error.status_code, error_code=f"HTTP_{error.status_code}"
        )
    return await handle_serving_error(request, mapped)


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    problems = [_problem(item) for item in error.errors()]
    return await handle_serving_error(
        request, InvalidInput.from_problems(problems or [Problem("invalid request")])
    )


def _problem(item: dict[str, Any]) -> Problem:
    """One of pydantic's complaints about a declared body or parameter. A key the client made up is
    never quoted back: the problem names the object that holds it."""
    location = [str(part) for part in item.get("loc", ())]
    if item.get("type") == "extra_forbidden":
        return Problem(
            "unknown field: only the documented fields are accepted", field=".".join(location[:-1])
        )
    return Problem(str(item.get("msg", "invalid")), field=".".join(location))


Handler = Callable[[Request, Exception], Awaitable[Response]]

EXCEPTION_HANDLERS: dict[type[Exception], Handler] = {
    ServingError: handle_serving_error,
    StarletteHTTPException: _http_error,
    RequestValidationError: _validation_error,
}
