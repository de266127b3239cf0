"""Which webhook deliveries were already received: one ledger per server, or per fleet with Redis.

A replayed delivery carries the same delivery id (the id is signed, so it cannot be changed
without the secret). The first `claim(delivery_id)` of an id answers True and every later one
False, for as long as a delivery with that id could still pass the freshness check. Where the
ids are kept decides who shares them:

- `MemoryLedger`: this process only (one worker, or the app built in process);
- `FolderLedger`: every worker of one `python -m server` (WORKERS > 1): one file per delivery in
  the folder it creates per start, claimed atomically with O_CREAT | O_EXCL;
- `RedisLedger`: every replica pointed at one Redis (`WEBHOOK_REDIS_URL`): `SET key NX PX`.

Entries expire by age, so memory and disk stay bounded by the deliveries of the last few
minutes. A ledger that cannot answer raises `LedgerUnavailable`: the delivery is refused (and
MLflow retries it, or polling sees the alias move) rather than risk accepting a replay.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

logger = logging.getLogger(__name__)

# Replicas' clocks may disagree a little: keep entries this much longer than the window needs.
CLOCK_SKEW_SECONDS = 60.0
# How often a process clears expired entries out of a shared folder.
SWEEP_SECONDS = 60.0


class LedgerUnavailable(Exception):
    """The ledger cannot say whether a delivery is new (Redis or the folder is unreachable)."""


class DeliveryLedger(Protocol):
    async def claim(self, delivery_id: str) -> bool:
        """True the first time `delivery_id` is claimed (within the retention), False after."""
        ...

    async def close(self) -> None: ...


def retention_seconds(max_age: float) -> float:
    """How long an id must be remembered: a delivery is fresh while its timestamp is within
    `max_age` of now, so one stamped `max_age` ahead stays acceptable for twice `max_age`."""
    return 2 * max_age + CLOCK_SKEW_SECONDS


def entry_name(delivery_id: str) -> str:
    """A fixed-length name for any id: safe as a file name and a Redis key, whatever was sent."""
    return hashlib.sha256(delivery_id.encode("utf-8", "surrogatepass")).hexdigest()


class MemoryLedger:
    """Ids in this process's memory, oldest first (every entry lives equally long)."""

    def __init__(self, retention: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._retention = retention
        self._clock = clock
        self._expiries: OrderedDict[str, float] = OrderedDict()

    async def claim(self, delivery_id: str) -> bool:
        now = self._clock()
        while self._expiries and next(iter(self._expiries.values())) <= now:
            self._expiries.popitem(last=False)
        name = entry_name(delivery_id)
        if name in self._expiries:
            return False
        self._expiries[name] = now + self._retention
        return True

    def __len__(self) -> int:
        return len(self._expiries)

    async def close(self) -> None:
        return None


class FolderLedger:
    """One empty file per delivery in a folder every worker shares; creating it is the claim.

    O_CREAT | O_EXCL makes creation atomic across processes: exactly one worker creates the file,
    the others get FileExistsError. A file's modification time is set to its claim's time; each
    process removes files older than the retention at most every SWEEP_SECONDS.
    """

    def __init__(self, folder: Path, retention: float, clock: Callable[[], float] = time.time) -> None:
        self._folder = folder
        self._retention = retention
        self._clock = clock
        self._next_sweep = 0.0
        self._failing = False
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    async def claim(self, delivery_id: str) -> bool:
        now = self._clock()
        try:
            if now >= self._next_sweep:
                self._sweep(now)
                self._next_sweep = now + min(SWEEP_SECONDS, self._retention)
            fd = os.open(self._folder / entry_name(delivery_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            self._recovered()
            return False
        except OSError as error:
            self._failed(error)
            raise LedgerUnavailable(
                f"the delivery ledger folder is unusable ({type(error).__name__})"
            ) from None
        try:
            with contextlib.suppress(OSError):  # else it keeps its creation time: near enough
                os.utime(fd, (now, now))  # the claim's time, on the clock the sweep reads
        finally:
            os.close(fd)
        self._recovered()
        return True

    def _sweep(self, now: float) -> None:
        cutoff = now - self._retention
        with os.scandir(self._folder) as entries:
            for entry in entries:
                # Another worker may remove the same file at the same time.
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)

    def _failed(self, error: OSError) -> None:
        if not self._failing:
            logger.warning(
                "webhook deliveries refused: the delivery ledger %s is unusable (%s)",
                self._folder,
                type(error).__name__,
            )
        self._failing = True

    def _recovered(self) -> None:
        if self._failing:
            logger.info("webhook deliveries accepted again: the delivery ledger is usable")
        self._failing = False

    def __len__(self) -> int:
        return sum(1 for _ in self._folder.iterdir())

    async def close(self) -> None:
        return None


class RedisLedger:
    """Ids as Redis keys set only if absent (`SET NX PX`), shared by every replica and worker."""

    def __init__(self, url: str, retention: float, prefix: str) -> None:
        import redis.asyncio as redis

        self._client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._retention_ms = max(1, round(retention * 1000))
        self._prefix = prefix
        self._failing = False

    async def claim(self, delivery_id: str) -> bool:
        key = self._prefix + entry_name(delivery_id)
        try:
            created = await self._client.set(key, b"1", nx=True, px=self._retention_ms)
        except Exception as error:  # noqa: BLE001 - any failure: we cannot tell a replay from a first
            if not self._failing:
                logger.warning(
                    "webhook deliveries refused: Redis is unreachable (%s); polling still follows the alias",
                    type(error).__name__,
                )
            self._failing = True
            raise LedgerUnavailable("the shared delivery ledger (Redis) is unreachable") from None
        if self._failing:
            logger.info("webhook deliveries accepted again: Redis is back")
            self._failing = False
        return bool(created)

    async def close(self) -> None:
        await self._client.aclose()
