"""JSON decoding: orjson first; Python's json where orjson refuses what clients do send.

Python's json accepts `NaN`, `Infinity` and numbers that overflow to infinity, which orjson
rejects as a whole document. Decoding those lets validation name the exact field instead of
calling the whole body "not JSON".
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from server.errors import MalformedJson


def decode(body: bytes) -> Any:
    """Parse `body` as JSON or raise `MalformedJson` saying where it broke."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        where = (
            f" at line {error.lineno}, column {error.colno}"
            if isinstance(error, json.JSONDecodeError)
            else ""
        )
        reason = error.msg if isinstance(error, json.JSONDecodeError) else "it is not valid UTF-8"
        raise MalformedJson(f"request body is not valid JSON{where}: {reason}") from None
    except RecursionError:
        raise MalformedJson("request body is not valid JSON: nested too deeply") from None
