"""The server's exceptions and the one shape every error body has.

Every error a client can cause is a `ServingError` carrying its HTTP status and a stable
`error_code`. The body is MLflow's `{"error_code", "message"}` plus, where they help, the
`details` (each problem's record index and field) and the request id; on the Open Inference
Protocol's paths it is that protocol's `{"error": message}`. Never a stack trace, never the
client's data echoed back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, and where: the record index (batches), and the field by name
    when it is one of the model's (or the protocol's) names, or by `position` (0-based, in the
    object's key order) when it is a key the client made up: those are never quoted back."""

    message: str
    field: str | None = None
    index: int | None = None
    position: int | None = None

    def as_dict(self) -> dict[str, Any]:
        where: dict[str, Any] = {}
        if self.index is not None:
            where["index"] = self.index
        if self.field is not None:
            where["field"] = self.field
        if self.position is not None:
            where["position"] = self.position
        return {**where, "message": self.message}

    def describe(self) -> str:
        place = []
        if self.index is not None:
            place.append(f"record {self.index}")
        if self.field is not None:
            place.append(self.field)
        if self.position is not None:
            place.append(f"key at position {self.position}")
        return f"{', '.join(place)}: {self.message}" if place else self.message


class ServingError(Exception):
    """Base of every error answered to a client; subclasses fix the status and code."""

    status_code: int = 500
    error_code: str = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        problems: Sequence[Problem] = (),
        headers: dict[str, str] | None = None,
        error_code: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.problems = tuple(problems)
        self.headers = headers or {}
        if error_code is not None:
            self.error_code = error_code
        if status_code is not None:
            self.status_code = status_code

    def body(self, request_id: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"error_code": self.error_code, "message": self.message}
        if self.problems:
            body["details"] = [p.as_dict() for p in self.problems]
        if request_id is not None:
            body["request_id"] = request_id
        return body

    def open_inference_body(self) -> dict[str, Any]:
        """The Open Inference Protocol's (and KServe V1's) error shape: the message alone; the
        request id travels in the `X-Request-ID` header."""
        return {"error": self.message}


class BadRequest(ServingError):
    status_code = 400
    error_code = "BAD_REQUEST"


class MalformedJson(BadRequest):
    error_code = "MALFORMED_REQUEST"


class NotFound(ServingError):
    status_code = 404
    error_code = "NOT_FOUND"


class MethodNotAllowed(ServingError):
    status_code = 405
    error_code = "METHOD_NOT_ALLOWED"


class PayloadTooLarge(ServingError):
    status_code = 413
    error_code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(ServingError):
    status_code = 415
    error_code = "UNSUPPORTED_MEDIA_TYPE"


class InvalidInput(ServingError):
    """The body is well-formed JSON but breaks the model's contract; `problems` say where."""

    status_code = 422
    error_code = "INVALID_INPUT"

    @classmethod
    def from_problems(cls, problems: Sequence[Problem], total: int | None = None) -> InvalidInput:
        count = total if total is not None else len(problems)
        first = problems[0].describe()
        more = f" (and {count - 1} more problem{'s' if count > 2 else ''})" if count > 1 else ""
        return cls(f"{first}{more}", problems=problems)


class RateLimited(ServingError):
    status_code = 429
    error_code = "RATE_LIMITED"

    def __init__(self, retry_after: float, reason: str = "rate limit reached") -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(f"{reason}; retry in {seconds} s", headers={"Retry-After": str(seconds)})


class Overloaded(ServingError):
    """Too many prediction requests in progress: refused at once instead of queued without end."""

    status_code = 503
    error_code = "OVERLOADED"

    def __init__(self) -> None:
        super().__init__("the server is at capacity; retry shortly", headers={"Retry-After": "1"})


class RequestTimeout(ServingError):
    status_code = 504
    error_code = "TIMEOUT"


class ModelNotReady(ServingError):
    status_code = 503
    error_code = "MODEL_NOT_READY"


class InternalError(ServingError):
    """An unexpected failure; the body carries only the request id to quote in a report."""

    def __init__(self) -> None:
        super().__init__("internal error; quote the request id when reporting it")
