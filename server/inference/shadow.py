"""Shadow mode: the champion answers, and the challenger scores a copy of the same rows later, on
its own thread, for comparison only.

Copies wait in a queue bounded in rows (SHADOW_QUEUE_ROWS, so a burst of 1,000-row batches holds
as little memory as one of single rows); a copy that does not fit is dropped and counted, never the
answer.
The scorer takes every copy waiting at once and scores their rows in one call where the
challenger's answers do not depend on the batch. What it records: the challenger's predicted
classes (`predictions_total{variant="challenger"}`), rows by agreement with the champion's class
(`shadow_agreement_total`), and each row's largest probability difference
(`shadow_probability_difference`), when both variants score the same classes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_wrapper import Prediction
from server.inference.predictor import generic_rows
from server.live.loaded_model import LoadedModel
from server.live.model_store import CHALLENGER, ModelStore
from server.observe import metrics

logger = logging.getLogger(__name__)

# Most rows scored in one shadow call: large enough to amortise a call, small enough that one
# call never holds the GIL long.
MAX_SHADOW_ROWS = 1024

Answer = Prediction | list[Any]


@dataclass(frozen=True, slots=True)
class ShadowCopy:
    """A request's rows in the champion's signature order, the champion's answer to them, and the
    challenger version it was copied for."""

    version: str
    champion: LoadedModel
    features: np.ndarray
    answer: Answer


class ShadowScorer:
    """The challenger's queue and its consumer."""

    def __init__(self, challenger: ModelStore, executor: Executor, queue_rows: int) -> None:
        self._challenger = challenger
        self._executor = executor
        self._limit = queue_rows
        self._copies: deque[ShadowCopy] = deque()
        self._rows = 0
        self._arrived = asyncio.Event()

    def offer(self, champion: LoadedModel, features: np.ndarray, answer: Answer) -> None:
        """Hand the challenger a copy, unless there is no challenger or its queue is full."""
        challenger = self._challenger.peek()
        if challenger is None:
            return
        if self._rows + len(features) > self._limit:
            metrics.record_shadow(challenger.source.version or "", "dropped")
            return
        self._copies.append(ShadowCopy(challenger.source.version or "", champion, features, answer))
        self._rows += len(features)
        self._arrived.set()

    def skip(self) -> None:
        """A request the champion answered without rows to copy (MLflow's own parsers read it)."""
        challenger = self._challenger.peek()
        if challenger is not None:
            metrics.record_shadow(challenger.source.version or "", "skipped")

    @property
    def waiting(self) -> int:
        """Copies waiting in this process."""
        return len(self._copies)

    async def run(self) -> None:
        """Score copies as they come, until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            while self._copies:
                copies = self._take()
                challenger = self._challenger.peek()
                if challenger is None:  # retired meanwhile: the copies are accounted for all the same
                    for copy in copies:
                        metrics.record_shadow(copy.version, "skipped")
                    continue
                try:
                    await loop.run_in_executor(self._executor, score_copies, challenger, copies)
                except Exception:  # the shadow never takes anything down; its failures are counted
                    logger.exception("the shadow scorer failed")

    def _take(self) -> list[ShadowCopy]:
        """The copies waiting, up to MAX_SHADOW_ROWS rows (at least one)."""
        copies = [self._copies.popleft()]
        rows = len(copies[0].features)
        while self._copies and rows + len(self._copies[0].features) <= MAX_SHADOW_ROWS:
            copy = self._copies.popleft()
            copies.append(copy)
            rows += len(copy.features)
        self._rows -= rows
        return copies


def score_copies(challenger: LoadedModel, copies: list[ShadowCopy]) -> None:
    """Score the copies with the challenger and record how its answers compare."""
    version = challenger.source.version or ""
    # Copies made for another challenger version (the alias moved while they waited) are not this
    # version's to score; rows of another signature it cannot read.
    comparable = [
        c for c in copies if c.version == version and c.champion.feature_names == challenger.feature_names
    ]
    for copy in copies:
        if copy.version != version or copy.champion.feature_names != challenger.feature_names:
            metrics.record_shadow(copy.version, "skipped")
    runtime = challenger.runtime
    groups = [comparable] if runtime is not None and runtime.row_invariant else [[c] for c in comparable]
    for group in groups:
        if not group:
            continue
        features = group[0].features if len(group) == 1 else np.concatenate([c.features for c in group])
        try:
            answer = _score(challenger, features)
        except Exception:  # noqa: BLE001 - the challenger's failure is counted, never raised
            metrics.record_shadow(version, "failed", copies=len(group))
            continue
        metrics.record_shadow(version, "scored", copies=len(group))
        if isinstance(answer, Prediction):
            metrics.record_predictions(answer.labels, (CHALLENGER, version), answered=False)
        _compare(challenger, group, answer)


def _score(challenger: LoadedModel, features: np.ndarray) -> Answer:
    if challenger.runtime is not None:  # not a `batch_size` model call: that histogram is the answers'
        return challenger.runtime.score(features)
    return generic_rows(challenger, features)


def _compare(challenger: LoadedModel, group: list[ShadowCopy], answer: Answer) -> None:
    """Rows agree when both variants predict the same class value; probabilities are compared
    when both scored the same classes in the same column order."""
    ours = _class_keys(answer)
    theirs = np.concatenate([_class_keys(c.answer) for c in group])
    same = ours == theirs if len(ours) == len(theirs) else np.zeros(len(theirs), dtype=bool)
    differences = None
    champion = [c.answer for c in group if isinstance(c.answer, Prediction)]
    if isinstance(answer, Prediction) and len(champion) == len(group) and _same_columns(challenger, group):
        probabilities = np.concatenate([p.probabilities for p in champion])
        if probabilities.shape == answer.probabilities.shape:
            differences = np.abs(probabilities - answer.probabilities).max(axis=1)
    metrics.record_agreement(challenger.source.version or "", same, differences)


def _same_columns(challenger: LoadedModel, group: list[ShadowCopy]) -> bool:
    """Both variants' probability columns stand for the same class values, in the same order."""
    if challenger.runtime is None:
        return False
    columns = challenger.runtime.classes.astype(str)
    return all(
        c.champion.runtime is not None and np.array_equal(c.champion.runtime.classes.astype(str), columns)
        for c in group
    )


def _class_keys(answer: Answer) -> np.ndarray:
    """Each row's predicted class value, as text, so classes compare across flavours."""
    if isinstance(answer, Prediction):
        return np.asarray(answer.classes).astype(str)
    return np.asarray([str(row) for row in answer])
