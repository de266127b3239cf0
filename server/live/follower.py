"""When to reload: follow `models:/NAME@ALIAS` in the registry.

Pull: every MODEL_POLL_SECONDS, one registry call asks where the alias points; only a move
loads anything. Push: a verified webhook delivery (or POST /model/reload) wakes the follower at
once; with several workers the one that got the delivery touches a shared signal file, which the
others watch. A registry that cannot be reached is retried with backoff while the served model
keeps serving. A version that was refused is not tried again until the alias moves again.

The challenger's follower differs in two ways (`optional=True`): an alias that is not set, or a
version that is refused, leaves no challenger (every request goes to the champion) rather than
keeping the old one; and a challenger URI that names no alias is loaded once, at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from server.live.loading import AliasNotSet, ModelLoader, RegistryReference, one_line, parse_registry_uri
from server.live.model_store import ModelStore
from server.live.reloader import Reloader, ReloadOutcome
from server.observe import metrics

logger = logging.getLogger(__name__)

SIGNAL_CHECK_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 60.0


@dataclass
class RegistryStatus:
    """What the follower last heard from the registry."""

    reachable: bool = True
    last_check: datetime | None = None
    last_error: str | None = None


class AliasFollower:
    """Keeps the store on the version the alias points at (`optional`: or on nothing)."""

    def __init__(
        self,
        uri: str,
        store: ModelStore,
        loader: ModelLoader,
        reloader: Reloader,
        executor: Executor,
        *,
        poll_seconds: float,
        signal_path: Path | None,
        optional: bool = False,
    ) -> None:
        reference = parse_registry_uri(uri)
        self.reference: RegistryReference | None = reference if reference and reference.alias else None
        self._uri = uri
        self._store = store
        self._loader = loader
        self._reloader = reloader
        self._executor = executor
        self._poll_seconds = poll_seconds
        self._signal_path = signal_path
        self._signal_seen = self._signal_mtime()
        self._wake = asyncio.Event()
        self._observed: str | None = None
        self._refused: str | None = None
        self._failures = 0
        self._optional = optional
        self.status = RegistryStatus()

    @property
    def active(self) -> bool:
        """Whether MODEL_URI names an alias to follow."""
        return self.reference is not None

    def nudge(self) -> None:
        """Check the registry now (a webhook arrived), here and, through the signal file, in every worker."""
        self._wake.set()
        if self._signal_path is not None:
            with contextlib.suppress(OSError):
                self._signal_path.touch()

    async def run(self) -> None:
        """The follower's loop, until cancelled at shutdown. An optional variant (the challenger)
        is looked up at once: the server starts without it."""
        if self._optional:
            await self._check_logged()
        elif not self.active:
            return
        while True:
            await self._sleep()
            await self._check_logged()

    async def _check_logged(self) -> None:
        try:
            await self.check()
        except Exception:
            logger.exception("alias check failed")

    async def check(self) -> ReloadOutcome:
        """Ask where the alias points; serve that version if it is new and was not refused."""
        current = self._store.peek()
        served = current.source.version if current is not None else None
        loop = asyncio.get_running_loop()
        if self.reference is None or self.reference.alias is None:
            if self._optional and current is None and self._refused is None:
                return await self._load_pinned()
            return ReloadOutcome("unchanged", served, served, "the model URI names no alias to follow")
        name, alias = self.reference.name, self.reference.alias
        try:
            version = await loop.run_in_executor(self._executor, self._loader.alias_version, name, alias)
        except AliasNotSet as unset:
            if not self._optional:
                self._registry_failed(one_line(unset))
                return ReloadOutcome("failed", None, served, f"registry: {self.status.last_error}")
            self._registry_answered()
            self._observed = None
            return await self._reloader.retire(str(unset), forget_refusal=True)
        except Exception as error:  # noqa: BLE001 - unreachable or confused, the model keeps serving
            self._registry_failed(one_line(error))
            return ReloadOutcome("failed", None, served, f"registry: {self.status.last_error}")
        self._registry_answered()
        moved, self._observed = version != self._observed, version
        if version == served:
            return ReloadOutcome("unchanged", version, served)
        if version == self._refused and not moved:
            return ReloadOutcome(
                "unchanged", served, served, f"version {version} was refused; waiting for the alias to move"
            )
        try:
            source = await loop.run_in_executor(
                self._executor, self._loader.describe, self._uri, name, version, alias
            )
        except Exception as error:  # noqa: BLE001
            self._registry_failed(one_line(error))
            return ReloadOutcome("failed", version, served, f"registry: {self.status.last_error}")
        outcome = await self._reloader.reload(source)
        self._refused = version if outcome.outcome in ("refused", "failed") else None
        if self._refused is not None and self._optional:
            await self._reloader.retire(f"version {version} was refused: {outcome.reason}")
        return outcome

    async def _load_pinned(self) -> ReloadOutcome:
        """An optional variant with a pinned URI (`models:/NAME/3`, `runs:/…`): loaded once."""
        loop = asyncio.get_running_loop()
        try:
            source = await loop.run_in_executor(self._executor, self._loader.resolve, self._uri)
        except Exception as error:  # noqa: BLE001
            self._registry_failed(one_line(error))
            return ReloadOutcome("failed", None, None, f"registry: {self.status.last_error}")
        self._registry_answered()
        outcome = await self._reloader.reload(source)
        # Refused by the gate: for good. Failed to load (the artifact store, say): tried again.
        self._refused = source.version or self._uri if outcome.outcome == "refused" else None
        return outcome

    async def _sleep(self) -> None:
        """Until the next poll, a nudge, or a touch of the signal file by another worker."""
        loop = asyncio.get_running_loop()
        interval = self._interval()
        deadline = loop.time() + interval if interval > 0 else None
        while True:
            timeout = SIGNAL_CHECK_SECONDS if self._signal_path is not None else None
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                timeout = remaining if timeout is None else min(timeout, remaining)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
                break
            except TimeoutError:
                if self._signal_changed():
                    break
        self._wake.clear()

    def _interval(self) -> float:
        if self._poll_seconds <= 0:
            return 0.0
        if self._failures == 0:
            return self._poll_seconds
        return min(self._poll_seconds * 2**self._failures, max(MAX_BACKOFF_SECONDS, self._poll_seconds))

    def _signal_mtime(self) -> float | None:
        if self._signal_path is None:
            return None
        try:
            return self._signal_path.stat().st_mtime_ns
        except OSError:
            return None

    def _signal_changed(self) -> bool:
        mtime = self._signal_mtime()
        changed, self._signal_seen = mtime != self._signal_seen, mtime
        return changed

    def _registry_failed(self, reason: str) -> None:
        self._failures += 1
        was_reachable = self.status.reachable
        self.status = RegistryStatus(False, datetime.now(UTC), reason)
        metrics.REGISTRY_REACHABLE.set(0)
        if was_reachable:
            logger.warning("registry unreachable (%s); still serving, retrying with backoff", reason)

    def _registry_answered(self) -> None:
        if not self.status.reachable:
            logger.info("registry reachable again")
        self._failures = 0
        self.status = RegistryStatus(True, datetime.now(UTC), None)
        metrics.REGISTRY_REACHABLE.set(1)
