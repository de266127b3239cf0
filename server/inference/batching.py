"""Adaptive micro-batching: requests that arrive together share one model call.

A request that the model serves cheaply is computed at once when nobody could share its call:
it is the only prediction request in progress (`InFlight`, counted by the admission middleware),
or none arrived for `IDLE_GAP`. Every other request joins a queue and awaits its own rows. The
queue is drained one event-loop turn later, after the loop has handled every connection whose data
arrived in the same turn, so requests that arrive together leave together, as one model call of up
to `max_rows` rows:
- a call the model's calibrated cost puts under `inline_budget` runs right there, on the loop:
  a few microseconds of arithmetic cost less than a hand-off to a thread;
- a costlier call goes to the inference thread, so the loop keeps accepting while it runs; the
  requests that arrive meanwhile form the next call. The busier the server, the bigger the
  batches, and nobody waits for a timer unless `max_wait` asks for one.

Under load this is faster than computing each request on its own: one call's fixed cost (and
its bookkeeping) is shared by the whole batch. Only models whose rows score independently of
their batch (`ClassifierRuntime.row_invariant`) are merged; any other model's
requests run one call each, so batching never changes an answer.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from model_wrapper import Prediction
from server.edge.in_flight import InFlight
from server.observe import metrics
from server.runtimes.base import ClassifierRuntime

# A request that follows the previous one by more than this finds an idle server: it is computed
# at once, without the loop turn that lets concurrent requests join it.
IDLE_GAP = 0.001


@dataclass
class _Pending:
    model: ClassifierRuntime
    features: np.ndarray
    future: asyncio.Future[Prediction]


class AdaptiveBatcher:
    """Runs `ClassifierRuntime.score` for concurrent requests, merged when it can."""

    def __init__(
        self,
        executor: Executor,
        *,
        max_rows: int,
        max_wait: float,
        inline_budget: float,
        in_flight: InFlight | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._executor = executor
        self._clock = clock
        self._in_flight = in_flight
        self._max_rows = max_rows
        self._max_wait = max_wait
        self._inline_budget = inline_budget
        self._queue: deque[_Pending] = deque()
        self._scheduled = False  # a drain is due on the next loop turn
        self._offloaded: asyncio.Task[None] | None = None  # a drain is waiting on the thread
        self._last_arrival = 0.0

    async def predict(self, model: ClassifierRuntime, features: np.ndarray) -> Prediction:
        """`model`'s prediction for `features` (its call cost was measured when it was loaded)."""
        loop = asyncio.get_running_loop()
        now = self._clock()
        quiet, self._last_arrival = now - self._last_arrival > IDLE_GAP, now
        # Nobody to batch with (batching is off, no other request in progress, or none came for
        # IDLE_GAP) and cheap: now. A lone client's next request finds only itself in progress.
        lone = self._in_flight is not None and self._in_flight.count <= 1
        alone = (self._max_rows == 1 or quiet or lone) and not self._queue and self._offloaded is None
        if alone and model.cost.estimate(len(features)) <= self._inline_budget:
            return _call(model, features)
        future: asyncio.Future[Prediction] = loop.create_future()
        self._queue.append(_Pending(model, features, future))
        if not self._scheduled and self._offloaded is None:
            self._scheduled = True
            if self._max_wait > 0:
                loop.call_later(self._max_wait, self._drain_on_loop)
            else:
                loop.call_soon(self._drain_on_loop)
        return await future

    def _drain_on_loop(self) -> None:
        """Serve cheap batches right here; hand the rest of the queue to the inference thread."""
        self._scheduled = False
        while self._queue:
            if self._queue[0].model.cost.estimate(self._head_rows()) > self._inline_budget:
                self._offloaded = asyncio.get_running_loop().create_task(self._drain_offloaded())
                return
            batch = self._next_batch()
            try:
                prediction = _call(batch[0].model, _stack(batch))
            except Exception as error:  # noqa: BLE001 - the waiters get the model's failure
                if len(batch) == 1:
                    _fail(batch, error)
                    continue
                for pending in batch:  # one request's rows broke the merged call: each on its own
                    try:
                        _deliver([pending], _call(pending.model, pending.features))
                    except Exception as own:  # noqa: BLE001
                        _fail([pending], own)
                continue
            _deliver(batch, prediction)

    async def _drain_offloaded(self) -> None:
        """Run batches on the inference thread until the queue is empty; the loop keeps accepting."""
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch = self._next_batch()
                model = batch[0].model
                try:
                    prediction = await loop.run_in_executor(self._executor, _call, model, _stack(batch))
                except Exception as error:  # noqa: BLE001 - the waiters get the model's failure
                    if len(batch) == 1:
                        _fail(batch, error)
                        continue
                    for pending in batch:  # one request's rows broke the merged call: each alone
                        try:
                            alone = await loop.run_in_executor(self._executor, _call, model, pending.features)
                        except Exception as own:  # noqa: BLE001
                            _fail([pending], own)
                        else:
                            _deliver([pending], alone)
                    continue
                _deliver(batch, prediction)
        finally:
            self._offloaded = None
            while self._queue:  # only when this task was cancelled (shutdown): nobody is left waiting
                self._queue.popleft().future.cancel()

    def _head_rows(self) -> int:
        """Rows the next batch would hold."""
        rows = 0
        first = self._queue[0].model
        for pending in self._queue:
            if pending.model is not first or (rows and rows + len(pending.features) > self._max_rows):
                break
            rows += len(pending.features)
            if not first.row_invariant:
                break
        return rows

    def _next_batch(self) -> list[_Pending]:
        """The oldest request, and those behind it for the same model while they fit `max_rows`."""
        first = self._queue.popleft()
        batch, rows = [first], len(first.features)
        if not first.model.row_invariant:
            return batch
        while self._queue:
            following = self._queue[0]
            if following.model is not first.model or rows + len(following.features) > self._max_rows:
                break
            batch.append(self._queue.popleft())
            rows += len(following.features)
        return batch


def _call(model: ClassifierRuntime, features: np.ndarray) -> Prediction:
    metrics.record_model_call(len(features))
    return model.score(features)


def _stack(batch: list[_Pending]) -> np.ndarray:
    return batch[0].features if len(batch) == 1 else np.concatenate([p.features for p in batch])


def _fail(batch: list[_Pending], error: Exception) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(error)


def _deliver(batch: list[_Pending], prediction: Prediction) -> None:
    """Give each waiter its own rows of the merged prediction (views, no copies)."""
    start = 0
    for pending in batch:
        stop = start + len(pending.features)
        if not pending.future.done():  # a client that went away cancelled its future
            rows = slice(start, stop)
            pending.future.set_result(
                Prediction(prediction.classes[rows], prediction.labels[rows], prediction.probabilities[rows])
            )
        start = stop
