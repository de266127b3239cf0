"""Which variant answers a request: the champion, or, in split mode, the challenger for its share
of routing keys.

Assignment is sticky without shared state: a routing key's bucket is a hash of the key alone
(BLAKE2b, not Python's per-process `hash`), the same on every replica and after restarts, and the
challenger answers the buckets below CHALLENGER_PERCENT. Raising the percentage therefore moves
only keys from the champion to the challenger, and only those it must. The key is the request's
`X-Routing-Key`, else the authenticated caller, else none: a random bucket for that request.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from dataclasses import dataclass

import numpy as np

from server.inference.shadow import Answer, ShadowScorer
from server.inference.split_policy import SplitPolicyHolder
from server.live.loaded_model import LoadedModel
from server.live.model_store import CHALLENGER, CHAMPION, ModelStore, Variant
from server.observe import metrics

BUCKETS = 10_000  # a percentage to two decimals
ROUTING_KEY_HEADER = "x-routing-key"
MODEL_VARIANT_HEADER = "X-Model-Variant"
MODEL_VERSION_HEADER = "X-Model-Version"
WATCH_SECONDS = 0.5


def bucket_of(key: str) -> int:
    """The key's fixed bucket in [0, BUCKETS)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


@dataclass(frozen=True, slots=True, eq=False)
class Served:
    """The variant that answers a request, its model, its metric labels (variant, version) and the
    headers that say so: made once per variant and model, never per request."""

    variant: Variant
    model: LoadedModel
    labels: tuple[str, str]
    headers: dict[str, str]


class VariantRouter:
    """Chooses the variant per request. Without a challenger (none configured, none loaded, or
    one refused) every request goes to the champion."""

    def __init__(
        self,
        champion: ModelStore,
        challenger: ModelStore | None,
        policy: SplitPolicyHolder,
        shadow: ShadowScorer | None = None,
    ) -> None:
        self._champion = champion
        self._challenger = challenger
        self.policy = policy
        self._shadow = shadow
        self._served: dict[Variant, Served] = {}
        self._pair: tuple[LoadedModel, LoadedModel, bool] | None = None

    @property
    def configured(self) -> bool:
        return self._challenger is not None

    def choose(self, routing_key: str | None) -> Served:
        """The variant for a request with this routing key (None: a random one). A challenger that
        no longer reads the champion's features (the champion changed its signature) answers none."""
        champion = self._champion.current
        challenger = self._challenger.peek() if self._challenger is not None else None
        if challenger is None:
            # A retired challenger is not kept alive from here.
            self._served.pop(CHALLENGER, None)
            self._pair = None
            return self._as(CHAMPION, champion)
        if not self._compatible(champion, challenger):
            return self._as(CHAMPION, champion)
        threshold = self.policy.current.threshold
        if threshold <= 0:
            return self._as(CHAMPION, champion)
        bucket = bucket_of(routing_key) if routing_key is not None else random.randrange(BUCKETS)
        return self._as(CHALLENGER, challenger) if bucket < threshold else self._as(CHAMPION, champion)

    def variants(self) -> list[Served]:
        """Every variant that answers requests now: the champion, and the challenger when one is
        loaded and reads the champion's features."""
        champion = self._champion.current
        served = [self._as(CHAMPION, champion)]
        challenger = self._challenger.peek() if self._challenger is not None else None
        if challenger is not None and self._compatible(champion, challenger):
            served.append(self._as(CHALLENGER, challenger))
        return served

    def answered(self, served: Served, features: np.ndarray, answer: Answer) -> None:
        """The champion answered these rows: in shadow mode, the challenger gets a copy."""
        if self._shadow is not None and served.variant == CHAMPION and self.policy.current.mode == "shadow":
            self._shadow.offer(served.model, features, answer)

    def answered_unread(self, served: Served) -> None:
        """The champion answered a request whose rows MLflow's parsers read: nothing to copy."""
        if self._shadow is not None and served.variant == CHAMPION and self.policy.current.mode == "shadow":
            self._shadow.skip()

    def challenger_share(self) -> float:
        """The percentage of requests the challenger answers now."""
        challenger = self._challenger.peek() if self._challenger is not None else None
        policy = self.policy.current
        return policy.percent if challenger is not None and policy.mode == "split" else 0.0

    async def watch(self) -> None:
        """Follow the policy other workers set, and publish the challenger's share, until
        cancelled (at once, and for good, without a challenger)."""
        metrics.CHALLENGER_TRAFFIC_PERCENT.set(self.challenger_share())
        if not self.configured:
            return
        while True:
            self.policy.refresh()
            metrics.CHALLENGER_TRAFFIC_PERCENT.set(self.challenger_share())
            await asyncio.sleep(WATCH_SECONDS)

    def _as(self, variant: Variant, model: LoadedModel) -> Served:
        """One `Served` per variant and model, made when the model changes, not per request."""
        served = self._served.get(variant)
        if served is None or served.model is not model:
            version = model.source.version
            headers = {MODEL_VARIANT_HEADER: variant}
            if version:
                headers[MODEL_VERSION_HEADER] = version
            served = Served(variant, model, (variant, version or ""), headers)
            self._served[variant] = served
        return served

    def _compatible(self, champion: LoadedModel, challenger: LoadedModel) -> bool:
        """Whether the two read the same features, decided once per pair of models."""
        pair = self._pair
        if pair is None or pair[0] is not champion or pair[1] is not challenger:
            pair = self._pair = (champion, challenger, champion.feature_names == challenger.feature_names)
        return pair[2]
