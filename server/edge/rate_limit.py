"""Token-bucket rate limits per caller, in this process or shared by every replica through Redis.

Each caller (API key name, or client address when authentication is off) has a bucket of `burst`
tokens refilled at `rate` per second; a request takes one token or is refused with the seconds
until one is back (the `Retry-After`). The Redis variant runs the same arithmetic atomically in a
Lua script on the Redis server's clock. If Redis cannot be reached, requests are let through
(availability over strictness) and the failure is logged once per outage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

logger = logging.getLogger(__name__)

MAX_LOCAL_BUCKETS = 100_000
V = TypeVar("V")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0


class Limiter(Protocol):
    async def acquire(self, caller: str) -> Decision: ...


def remember(table: dict[str, V], key: str, value: V) -> None:
    """`table[key] = value`, forgetting the oldest entry first when a new key would take the table
    past MAX_LOCAL_BUCKETS: one table per process, whatever number of callers."""
    if key not in table and len(table) >= MAX_LOCAL_BUCKETS:
        table.pop(next(iter(table)))
    table[key] = value


class LocalTokenBuckets:
    """Buckets in this process's memory (each worker and replica counts on its own)."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, updated)

    async def acquire(self, caller: str) -> Decision:
        now = self._clock()
        tokens, updated = self._buckets.get(caller, (self._burst, now))
        tokens = min(self._burst, tokens + (now - updated) * self._rate)
        if tokens >= 1.0:
            self._remember(caller, (tokens - 1.0, now))
            return Decision(True)
        self._remember(caller, (tokens, now))
        return Decision(False, (1.0 - tokens) / self._rate)

    def _remember(self, caller: str, state: tuple[float, float]) -> None:
        remember(self._buckets, caller, state)


# KEYS[1]: the bucket; ARGV: rate per second, burst. Returns {allowed, seconds to wait as text}.
TOKEN_BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1]) or burst
local updated = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""


class RedisTokenBuckets:
    """The same buckets in Redis, shared by every worker and replica that points at it."""

    def __init__(
        self,
        url: str,
        rate: float,
        burst: int,
        prefix: str = "registry-serve:rate:",
        fallback: Limiter | None = None,
    ) -> None:
        """`fallback` decides while Redis cannot be reached; without one, requests pass."""
        import redis.asyncio as redis

        self._client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._client.register_script(TOKEN_BUCKET_SCRIPT)
        self._rate = rate
        self._burst = burst
        self._prefix = prefix
        self._fallback = fallback
        self._failing = False

    async def acquire(self, caller: str) -> Decision:
        try:
            allowed, wait = await self._script(keys=[self._prefix + caller], args=[self._rate, self._burst])
        except Exception as error:  # noqa: BLE001 - a Redis outage must not take predictions down
            if not self._failing:
                what = "counted in this process" if self._fallback else "not enforced"
                logger.warning(
                    "limits under %s %s: Redis is unreachable (%s)", self._prefix, what, type(error).__name__
                )
            self._failing = True
            return await self._fallback.acquire(caller) if self._fallback else Decision(True)
        if self._failing:
            logger.info("limits under %s shared again: Redis is back", self._prefix)
            self._failing = False
        return Decision(bool(int(allowed)), float(wait))

    async def close(self) -> None:
        await self._client.aclose()


class FailedCredentialLimiter:
    """Limits failed credentials per client address: each failure takes a token from the address's
    bucket (shared through Redis when configured); once the bucket is empty, the address is refused
    with 429 for `Retry-After` seconds, whatever it sends, so guessing keys or tokens gets no
    further. Valid credentials take no token.

    The block itself is remembered in this process: a replica learns of it at the first failure it
    sees from that address, so with Redis at most one more attempt per replica gets through.
    """

    def __init__(self, buckets: Limiter, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets = buckets
        self._clock = clock
        self._blocked_until: dict[str, float] = {}

    def blocked(self, address: str) -> float | None:
        """Seconds until `address` may try again, or None when it is not blocked."""
        until = self._blocked_until.get(address)
        if until is None:
            return None
        remaining = until - self._clock()
        if remaining > 0:
            return remaining
        del self._blocked_until[address]
        return None

    async def record_failure(self, address: str) -> float | None:
        """Count one failure; the seconds `address` is now blocked for, or None."""
        decision = await self._buckets.acquire(address)
        if decision.allowed:
            return None
        remember(self._blocked_until, address, self._clock() + decision.retry_after)
        return decision.retry_after

    async def close(self) -> None:
        if isinstance(self._buckets, RedisTokenBuckets):
            await self._buckets.close()
