"""A listening socket per worker (SO_REUSEPORT), so the kernel spreads connections evenly.

uvicorn's multi-worker supervisor binds one socket in the parent and every worker accepts from
it: whichever worker wakes first takes the connection. Keep-alive connections (a load balancer's,
a benchmark's) stay where they first landed, so the early winners keep their share for good. With
SO_REUSEPORT each worker listens on a socket of its own in one group, and Linux hashes each new
connection to one of them, evenly.

`ReusePortSockets` fits this into uvicorn's supervisor unchanged (its restarts, health checks and
signals stay as they are). It is the socket list the supervisor hands each worker it spawns: empty
in the parent, it pickles (which is how a spawned worker receives its sockets) to a call that the
worker makes as it unpickles, binding a socket of its own there. The parent never holds one, so
no socket outlives its worker, and a restarted worker binds afresh. A worker listens only once its
app has started, model loaded, so no connection is routed to a worker still loading. The price:
connections still queued on a worker that dies are reset rather than taken by another worker.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

from server.process.uvicorn_adapter import STARTUP_FAILURE

AVAILABLE = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def port_problem(host: str, port: int) -> str | None:
    """Why workers could not have (host, port), or None. Checked with a plain bind, without
    SO_REUSEPORT: a second server of the same user would otherwise join the first one's group and
    quietly take a share of its connections."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return error.strerror or str(error)
    return None


def bind_reuse_port(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) in the port's SO_REUSEPORT group, not yet listening."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _bind_in_worker(host: str, port: int) -> list[socket.socket]:
    """The worker's sockets, made in the worker as it unpickles what the supervisor sent. A port
    lost since start-up ends the worker with uvicorn's start-up failure, which stops the
    supervisor instead of restarting the worker forever."""
    try:
        return [bind_reuse_port(host, port)]
    except OSError as error:
        print(f"error: cannot listen on {host}:{port}: {error.strerror or error}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)


class ReusePortSockets(list):  # type: ignore[type-arg]
    """uvicorn's socket list for its workers: each worker unpickles it into a socket of its own."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self._address = (host, port)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_bind_in_worker, self._address)
