"""Putting a new version into service: load it off the event loop, gate it, swap it in, tag it.

One reload runs at a time per variant. Requests never wait for it: they keep the model they
started with, and the swap itself is one reference assignment (`ModelStore.swap`). A version that
fails to load or fails the gate is refused; the served model stays (a challenger's is retired by
its follower instead), and the refusal is kept for /health, /model/metadata and /model/variants
until a later version goes live.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from server.live.gate import GateRefused, check_candidate
from server.live.loaded_model import LoadedModel, ModelSource
from server.live.loading import ModelLoader, one_line
from server.live.model_store import CHAMPION, ModelStore
from server.observe import metrics

logger = logging.getLogger(__name__)

# The replaced model's files stay this long, for anything still reading them lazily.
RETIRED_FILES_GRACE_SECONDS = 60.0
LIVE_TAG_PREFIX = "serving."

Outcome = Literal["unchanged", "swapped", "refused", "failed", "retired"]


@dataclass(frozen=True)
class ReloadOutcome:
    """What one reload did."""

    outcome: Outcome
    version: str | None
    previous: str | None
    reason: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class ReloadError:
    """The last version that could not go live, and why."""

    version: str | None
    reason: str
    at: datetime


class Reloader:
    """Loads, gates and swaps in versions for one `ModelStore` (one variant).

    `contract` is the model whose input signature a candidate must keep: the served one for the
    champion; the champion for the challenger, since both answer the same requests.
    """

    def __init__(
        self,
        store: ModelStore,
        loader: ModelLoader,
        executor: Executor,
        *,
        allow_signature_change: bool,
        deployment_name: str,
        tag_live_version: bool,
        contract: Callable[[], LoadedModel | None] | None = None,
    ) -> None:
        self._store = store
        self._loader = loader
        self._executor = executor
        self._allow_signature_change = allow_signature_change
        self._contract = contract if contract is not None else store.peek
        self._tag = live_tag(deployment_name, store.variant) if tag_live_version else None
        self._lock = asyncio.Lock()
        self.last_error: ReloadError | None = None

    async def reload(self, source: ModelSource) -> ReloadOutcome:
        """Serve `source` unless it is already served; never lets a broken version in."""
        async with self._lock:
            current = self._store.peek()
            previous = current.source.version if current is not None else None
            if current is not None and previous is not None and previous == source.version:
                return ReloadOutcome("unchanged", source.version, previous)
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            try:
                candidate = await loop.run_in_executor(self._executor, self._loader.load, source)
            except Exception as error:  # noqa: BLE001 - any load failure is a refusal, not a crash
                return self._refuse(
                    "failed", source, previous, f"could not load it: {one_line(error)}", started
                )
            try:
                await loop.run_in_executor(self._executor, self._gate, self._contract(), candidate)
            except GateRefused as refusal:
                _remove_files(candidate)
                return self._refuse("refused", source, previous, str(refusal), started)
            retired = self._store.swap(candidate)
            seconds = time.perf_counter() - started
            metrics.record_reload("swapped", seconds, self._store.variant)
            self.last_error = None
            logger.info(
                "now serving %s version %s (was %s), loaded in %.2f s",
                source.name,
                source.version,
                previous,
                seconds,
            )
            if retired is not None:
                loop.call_later(RETIRED_FILES_GRACE_SECONDS, _remove_files, retired)
            if self._tag is not None:
                loop.run_in_executor(self._executor, self._retag, retired, candidate)
            return ReloadOutcome("swapped", source.version, previous, seconds=seconds)

    async def retire(self, reason: str | None, *, forget_refusal: bool = False) -> ReloadOutcome:
        """Serve nothing from now on (a challenger whose alias is gone, or whose new version was
        refused): requests go to the champion alone. `forget_refusal`: the alias is gone, so an
        earlier refusal no longer describes the variant."""
        async with self._lock:
            if forget_refusal:
                self.last_error = None
            retired = self._store.retire()
            if retired is None:
                return ReloadOutcome("unchanged", None, None, reason)
            logger.info(
                "no %s any more (was version %s): %s", self._store.variant, retired.source.version, reason
            )
            loop = asyncio.get_running_loop()
            loop.call_later(RETIRED_FILES_GRACE_SECONDS, _remove_files, retired)
            if self._tag is not None:
                loop.run_in_executor(self._executor, self._retag, retired, None)
            return ReloadOutcome("retired", None, retired.source.version, reason)

    @property
    def store(self) -> ModelStore:
        return self._store

    @property
    def loader(self) -> ModelLoader:
        return self._loader

    def announce(self, model: LoadedModel) -> None:
        """Tag the model the server started with as live (in the background)."""
        if self._tag is not None:
            asyncio.get_running_loop().run_in_executor(self._executor, self._retag, None, model)

    def _gate(self, current: LoadedModel | None, candidate: LoadedModel) -> None:
        check_candidate(current, candidate, allow_signature_change=self._allow_signature_change)

    def _refuse(
        self, outcome: Outcome, source: ModelSource, previous: str | None, reason: str, started: float
    ) -> ReloadOutcome:
        seconds = time.perf_counter() - started
        metrics.record_reload(outcome, seconds, self._store.variant)
        self.last_error = ReloadError(source.version, reason, datetime.now(UTC))
        still = (
            f"still serving version {previous}"
            if self._store.variant == CHAMPION
            else "the champion answers every request"
        )
        logger.warning(
            "refused %s version %s as %s: %s; %s",
            source.name,
            source.version,
            self._store.variant,
            reason,
            still,
        )
        return ReloadOutcome(outcome, source.version, previous, reason, seconds)

    def _retag(self, retired: LoadedModel | None, live: LoadedModel | None) -> None:
        """Show in the registry where each version is live: tag the new one, untag the old one."""
        assert self._tag is not None
        client = self._loader.client
        live_version = live.source.version if live is not None else None
        try:
            if live is not None and live.source.name and live.source.version:
                stamp = datetime.now(UTC).isoformat(timespec="seconds")
                client.set_model_version_tag(
                    live.source.name, live.source.version, self._tag, f"live since {stamp}"
                )
            old = retired.source if retired is not None else None
            if old is not None and old.name and old.version and old.version != live_version:
                client.delete_model_version_tag(old.name, old.version, self._tag)
        except Exception as error:  # noqa: BLE001 - tags are a courtesy; serving goes on without them
            logger.warning("could not update the %s tags in the registry: %s", self._tag, one_line(error))


def live_tag(deployment_name: str, variant: str) -> str:
    """The version tag that says where a version is live: `serving.<deployment>` for the champion,
    `serving.<deployment>.challenger` for the challenger."""
    base = f"{LIVE_TAG_PREFIX}{deployment_name}"
    return base if variant == CHAMPION else f"{base}.{variant}"


def _remove_files(model: LoadedModel) -> None:
    if model.local_dir is not None:
        shutil.rmtree(model.local_dir, ignore_errors=True)
