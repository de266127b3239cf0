"""The request id of the request being served, for logs and error bodies."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "x-request-id"
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

current_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def accept_or_generate(candidate: str | None) -> str:
    """Keep a client's id when it is short and plain (safe in logs and headers), else make one."""
    if candidate is not None and _ACCEPTABLE.fullmatch(candidate):
        return candidate
    return uuid.uuid4().hex
