"""How many prediction requests are in progress: counted by the admission middleware, read by the
batcher, which computes a request at once when nobody else is there to share its model call."""

from __future__ import annotations


class InFlight:
    """A counter shared by one app's admission middleware and its batcher (one event loop)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0
