"""A small, bounded background load for the end-to-end tests: every answer's status, version and
variant."""

from __future__ import annotations

import threading
import time
from collections import Counter
from types import TracebackType

import httpx


class BackgroundLoad:
    """`threads` clients POSTing one /predict body in a loop until stopped (at most `limit` s)."""

    def __init__(self, url: str, body: dict[str, float], threads: int = 8, limit: float = 120) -> None:
        self.url = url
        self.body = body
        self.threads = threads
        self.limit = limit
        self.statuses: Counter[int] = Counter()
        self.versions: list[tuple[float, str | None]] = []
        self.variants: Counter[str | None] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    response = client.post("/predict", json=self.body)
                except httpx.HTTPError as error:
                    with self._lock:
                        self.errors.append(repr(error))
                    continue
                with self._lock:
                    self.statuses[response.status_code] += 1
                    self.versions.append((time.monotonic(), response.headers.get("x-model-version")))
                    self.variants[response.headers.get("x-model-variant")] += 1

    def first_seen(self, version: str) -> float | None:
        with self._lock:
            return next((at for at, seen in self.versions if seen == version), None)

    def answered_after(self, count: int) -> int:
        """Answers that came after the first `count` (compare with an earlier `total`)."""
        return self.total - count

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.statuses.values())

    def __enter__(self) -> BackgroundLoad:
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)
