"""The path a request names inside the app (without any `root_path` a proxy mounted it under).

Starlette keeps this in a private helper (`starlette._utils.get_route_path`); this is the one
module that imports it, and `tests/server/test_library_adapters.py` fails loudly when an upgrade
moves or changes it.
"""

from __future__ import annotations

from starlette._utils import get_route_path
from starlette.types import Scope


def route_path(scope: Scope) -> str:
    return get_route_path(scope)
