"""A listening socket per worker (SO_REUSEPORT), so the kernel spreads connections evenly.

uvicorn's multi-worker supervisor binds one socket in the parent and every worker accepts from
it: whichever worker wakes first takes the connection. Keep-alive connections (a load balancer's,
a benchmark's) stay where they first landed, so the early winners keep their share for good. With
SO_REUSEPORT each worker listens on a socket of its own in one group, and Linux hashes each new
connection to one of them, evenly.

`ReusePortSockets` fits this into uvicorn's supervisor unchanged (its restarts, health checks and
signals stay as they are). It is the socket list the supervisor hands each worker it spawns. It
is empty in the parent, and it pickles (which is how a spawned worker receives its sockets) to a
list holding a socket bound just then. So every worker, a restarted one too, gets a socket of its
own. `ReusePortSupervisor` then closes the parent's copy: a listening socket the parent kept
would stay in the group after its worker died, and the connections hashed to it would wait for
nobody. A worker listens only once its app has started, model loaded, so no connection is routed
to a worker that is still loading. The price: connections still queued on a worker that dies are
reset rather than taken by another worker.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

from uvicorn import Config
from uvicorn.supervisors import Multiprocess

AVAILABLE = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def port_problem(host: str, port: int) -> str | None:
    """Why workers could not have (host, port), or None. Something listening there already is one
    reason: a second server of the same user would otherwise join the SO_REUSEPORT group and
    quietly take a share of the connections, where a plain bind fails "address already in use"."""
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    with socket.socket(socket.AF_INET6 if ":" in target else socket.AF_INET) as probe:
        probe.settimeout(1.0)
        if probe.connect_ex((target, port)) == 0:
            return "something already listens there"
    try:
        bind_reuse_port(host, port).close()
    except OSError as error:
        return str(error)
    return None


def bind_reuse_port(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) in the port's SO_REUSEPORT group, not yet listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class ReusePortSockets(list):  # type: ignore[type-arg]
    """uvicorn's socket list for its workers: each pickled copy holds a socket of its own."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self._address = (host, port)
        self._last: socket.socket | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # A spawned worker inherits the descriptor as it is started, right after this pickling;
        # by the next pickling that worker exists, so the parent's copy of the last socket can go.
        if self._last is not None:
            self._last.close()
        self._last = bind_reuse_port(*self._address)
        return (list, ([self._last],))

    def close(self) -> None:
        """Close the parent's copy of the last socket handed out (its worker has its own)."""
        if self._last is not None:
            self._last.close()
            self._last = None


class ReusePortSupervisor(Multiprocess):
    """uvicorn's supervisor, its workers each on a socket of their own."""

    def __init__(self, config: Config, host: str, port: int) -> None:
        self._worker_sockets = ReusePortSockets(host, port)
        super().__init__(config, sockets=self._worker_sockets)

    def init_processes(self) -> None:
        super().init_processes()
        self._worker_sockets.close()

    def keep_subprocess_alive(self) -> None:
        # Runs every half second, after any restart (a dead worker, SIGHUP, SIGTTIN): a new
        # worker takes seconds to load its model and listen, by when the parent's copy is gone.
        super().keep_subprocess_alive()
        self._worker_sockets.close()
