"""The request id of the request being served, for logs and error bodies, and the other facts a
request's layers pass each other."""

from __future__ import annotations

import itertools
import os
import re
from contextvars import ContextVar

REQUEST_ID_HEADER = "x-request-id"
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

current_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# What the layers of one request tell each other, in its ASGI `scope["state"]`:
CALLER_STATE = "caller"  # the authenticated caller's name (AccessMiddleware), a routing key
STARTED_STATE = "started"  # time.perf_counter() when the traffic middleware saw the request
VARIANT_STATE = "variant"  # (variant, version) of the model that met it (the prediction routes), for metrics


# A random per-process prefix and a counter: unique like a uuid4, a fraction of its cost.
_PREFIX = os.urandom(8).hex()
_COUNTER = itertools.count()


def new_request_id() -> str:
    return f"{_PREFIX}{next(_COUNTER):016x}"


def accept_or_generate(candidate: str | None) -> str:
    """Keep a client's id when it is short and plain (safe in logs and headers), else make one."""
    if candidate is not None and _ACCEPTABLE.fullmatch(candidate):
        return candidate
    return new_request_id()
