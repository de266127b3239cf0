"""Lingering answers: a request answered before its body was read still gets its answer read.

A server that answers early (413 for a body over MAX_BODY_BYTES, 401, 403, 429, 415, 404, 405,
503, 504) and then closes the connection while the client is still sending has unread bytes in
its socket, and closing such a socket sends a TCP reset: the client's next write fails with
"connection reset by peer", and a client that sends the whole body before reading (urllib, for
one) never reads the answer. uvicorn closes right after the answer whenever the connection is not
kept alive (the client sent `Connection: close`, or spoke HTTP/1.0); on a kept-alive connection it
discards the rest itself, without any bound, and the keep-alive timeout it cancels on the way is
never set again. Once an answer is complete it passes no more of the body to the application.

So `LingeringBodyMiddleware`, outermost, holds back the last message of an early answer (its
content already sent), reads and discards the rest of the body, and only then completes the
answer, as nginx's `lingering_close` does: at most MAX_DISCARD_BYTES, LINGER_SECONDS in all and
LINGER_IDLE_SECONDS per wait. When the rest may be longer than MAX_DISCARD_BYTES (by its
Content-Length), or cannot be known (a chunked body; a client still waiting for `100 Continue`),
the answer says `Connection: close` at once, so a client reading while it sends can stop, and the
connection is closed after the discarding. Otherwise it stays usable. A request whose body the
application read in full pays one flag check per message.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

LINGER_SECONDS = 30.0
"""The most time spent discarding the rest of one request's body (nginx's `lingering_time`)."""
LINGER_IDLE_SECONDS = 5.0
"""The longest wait for the next part of that body (nginx's `lingering_timeout`)."""

_CONNECTION_CLOSE = (b"connection", b"close")


def _must_close(headers: list[tuple[bytes, bytes]], read_any: bool, bound: int) -> bool | None:
    """Whether an early answer must close the connection: when what is left of the body may be
    longer than `bound`. None when the request has no body."""
    length: int | None = None
    for name, value in headers:
        if name == b"transfer-encoding":
            return True  # chunked: how much is left is unknown
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return True
        elif name == b"expect" and value.lower() == b"100-continue" and not read_any:
            return True  # nobody told the client to send its body: it may never come, or come now
    if length is None:
        return None
    return length > bound  # what is left is at most the declared length (all of it, if none was read)


class LingeringBodyMiddleware:
    """Reads and discards what a client still sends after an early answer, before completing it."""

    def __init__(self, app: ASGIApp, max_discard_bytes: int) -> None:
        self.app = app
        self._bound = max_discard_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # None: the application has not asked for the body; True: it has not received all of it.
        unread: bool | None = None

        async def tracked_receive() -> Message:
            nonlocal unread
            message = await receive()
            unread = message.get("more_body", False)  # a disconnect has none: nothing left to read
            return message

        async def lingering_send(message: Message) -> None:
            nonlocal unread
            if unread is False:
                await send(message)
                return
            kind = message["type"]
            if kind == "http.response.start":
                close = _must_close(scope["headers"], unread is not None, self._bound)
                if close is None:
                    unread = False
                elif close:
                    message["headers"] = [*message.get("headers", ()), _CONNECTION_CLOSE]
                await send(message)
            elif kind == "http.response.body" and not message.get("more_body", False):
                if message.get("body"):
                    await send({**message, "more_body": True})
                if self._bound:
                    await self._discard(receive)
                unread = False
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                await send(message)

        await self.app(scope, tracked_receive, lingering_send)

    async def _discard(self, receive: Receive) -> None:
        """Read and drop the rest of the body until it ends, the client leaves, or a bound is
        reached; whatever comes after that is the server's to deal with (uvicorn closes the
        connection after an answer saying `Connection: close`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LINGER_SECONDS
        discarded = 0
        while discarded <= self._bound:
            wait = min(LINGER_IDLE_SECONDS, deadline - loop.time())
            if wait <= 0:
                return
            try:
                async with asyncio.timeout(wait):
                    message = await receive()
            except TimeoutError:
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            discarded += len(message.get("body", b""))
