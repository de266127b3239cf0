"""A test's own load balancer: round-robin over backends that are in rotation, like a Service
that only routes to ready pods. Taking a backend out of rotation before stopping it is what a
Kubernetes preStop pause plus readiness achieves; `outstanding` says when a backend taken out of
rotation has answered the last request forwarded to it."""

from __future__ import annotations

import itertools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import httpx


class RoundRobin:
    def __init__(self) -> None:
        self._backends: list[str] = []
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self.forwarded: dict[str, int] = {}
        self._outstanding: dict[str, int] = {}
        balancer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                backend = balancer._next()
                try:
                    with httpx.Client(timeout=30) as client:
                        upstream = client.post(
                            f"{backend}{self.path}",
                            content=body,
                            headers={"content-type": self.headers["content-type"]},
                        )
                finally:
                    with balancer._lock:
                        balancer._outstanding[backend] -= 1
                with balancer._lock:
                    balancer.forwarded[backend] = balancer.forwarded.get(backend, 0) + 1
                self.send_response(upstream.status_code)
                self.send_header("content-type", upstream.headers.get("content-type", "application/json"))
                self.send_header("content-length", str(len(upstream.content)))
                self.end_headers()
                self.wfile.write(upstream.content)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _next(self) -> str:
        with self._lock:
            backend = self._backends[next(self._turn) % len(self._backends)]
            self._outstanding[backend] = self._outstanding.get(backend, 0) + 1
            return backend

    def outstanding(self, backend: str) -> int:
        """Requests forwarded to `backend` and not answered yet."""
        with self._lock:
            return self._outstanding.get(backend, 0)

    def served(self, backend: str) -> int:
        """Requests `backend` has answered."""
        with self._lock:
            return self.forwarded.get(backend, 0)

    def add(self, backend: str) -> None:
        with self._lock:
            self._backends.append(backend)

    def remove(self, backend: str) -> None:
        with self._lock:
            self._backends.remove(backend)

    def __enter__(self) -> RoundRobin:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
