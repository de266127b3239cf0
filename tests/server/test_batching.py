"""The adaptive batcher: concurrent requests share calls, answers never change, failures reach
everyone, and nothing waits needlessly.

Nothing here depends on how fast this machine is: arrivals are stamped by a clock the test moves
(`ManualClock`), each model call's cost is given (`CHEAP`, `COSTLY`) rather than measured, and a
call on the inference thread is held open with an event while the next requests arrive.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.base import ClassifierMixin
from sklearn.neighbors import KNeighborsClassifier

from model_wrapper import Prediction, SklearnClassifierModel
from model_wrapper.export import describe
from registry_scripts.dataset import load_frame
from registry_scripts.estimators import build_estimator
from server.edge.in_flight import InFlight
from server.inference.batching import IDLE_GAP, AdaptiveBatcher
from server.runtimes.call_cost import CallCost, calibrate
from server.runtimes.wrapper import WrapperRuntime

FEATURES, TARGET, NAMES = load_frame()
ROWS = FEATURES.to_numpy(dtype=np.float64)
BUDGET = 250e-6
CHEAP = CallCost(per_call=10e-6, per_row=0.1e-6)  # well under BUDGET for every batch here
COSTLY = CallCost(per_call=1.0, per_row=0.0)  # always over BUDGET: the inference thread's


class ManualClock:
    """The batcher's arrival clock: it moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingModel(WrapperRuntime):
    """The real wrapper's runtime, recording each call's row count and thread; a call on the
    inference thread waits for `release` when the test holds it."""

    def __init__(self, estimator: ClassifierMixin, cost: CallCost = CHEAP) -> None:
        fitted = estimator.fit(ROWS, TARGET.to_numpy())
        super().__init__(SklearnClassifierModel.from_estimator(fitted, describe(estimator, NAMES)))
        self.calls: list[tuple[int, str]] = []
        self.fail_with: Exception | None = None
        self._cost = cost  # given, not measured
        self.started = threading.Event()
        self.release: threading.Event | None = None

    def score(self, features: np.ndarray) -> Prediction:
        self.calls.append((len(features), threading.current_thread().name))
        self.started.set()
        if self.release is not None and threading.current_thread().name.startswith("inference"):
            assert self.release.wait(30), "the test never released the call"
        if self.fail_with is not None:
            raise self.fail_with
        return super().score(features)


POISON = 12345.0


class PoisonedModel(CountingModel):
    """Raises on any call that holds a row of POISON, as a model raises on rows it cannot score."""

    def score(self, features: np.ndarray) -> Prediction:
        if (features == POISON).all(axis=1).any():
            self.calls.append((len(features), threading.current_thread().name))
            raise ValueError("cannot score this row")
        return super().score(features)


@pytest.fixture
def executor():
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference") as pool:
        yield pool


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def _batcher(executor, clock: ManualClock, **overrides) -> AdaptiveBatcher:
    options = {"max_rows": 1024, "max_wait": 0.0, "inline_budget": BUDGET} | overrides
    return AdaptiveBatcher(executor, clock=clock, **options)


async def _concurrently(batcher: AdaptiveBatcher, model: CountingModel, parts: list[np.ndarray]):
    return await asyncio.gather(*(batcher.predict(model, part) for part in parts))


def _parts(count: int, rows: int = 1, first: int = 0) -> list[np.ndarray]:
    return [ROWS[(first + i) * rows : (first + i + 1) * rows] for i in range(count)]


def test_concurrent_requests_share_one_call_and_keep_their_own_rows(executor, clock) -> None:
    model = CountingModel(build_estimator("logistic_regression", 0))
    batcher = _batcher(executor, clock)
    parts = _parts(16, rows=3)
    answers = asyncio.run(_concurrently(batcher, model, parts))
    # The first of a burst after a quiet spell is served at once; the fifteen behind it share a call.
    assert model.calls == [(3, "MainThread"), (45, "MainThread")]
    for part, answer in zip(parts, answers, strict=True):
        alone = model.score(part)
        np.testing.assert_array_equal(answer.probabilities, alone.probabilities)
        np.testing.assert_array_equal(answer.classes, alone.classes)
        np.testing.assert_array_equal(answer.labels, alone.labels)


def test_batches_never_exceed_max_rows(executor, clock) -> None:
    model = CountingModel(build_estimator("logistic_regression", 0))
    batcher = _batcher(executor, clock, max_rows=10)
    asyncio.run(_concurrently(batcher, model, _parts(12, rows=3)))
    assert [rows for rows, _ in model.calls] == [3, 9, 9, 9, 6]


def test_max_rows_one_never_merges(executor, clock) -> None:
    model = CountingModel(build_estimator("logistic_regression", 0))
    batcher = _batcher(executor, clock, max_rows=1)
    asyncio.run(_concurrently(batcher, model, _parts(5)))
    assert model.calls == [(1, "MainThread")] * 5


def test_costly_calls_run_on_the_inference_thread_and_batch_meanwhile(executor, clock) -> None:
    """While one call runs on the inference thread, the requests that arrive form the next call."""
    model = CountingModel(build_estimator("logistic_regression", 0), cost=COSTLY)
    model.release = threading.Event()
    batcher = _batcher(executor, clock)

    async def scenario() -> list[Prediction]:
        first = [asyncio.ensure_future(batcher.predict(model, p)) for p in _parts(5)]
        await asyncio.to_thread(model.started.wait, 30)  # the first call runs, held open
        meanwhile = [asyncio.ensure_future(batcher.predict(model, p)) for p in _parts(7, first=5)]
        await asyncio.sleep(0)  # every one of them queued behind the running call
        model.release.set()
        return await asyncio.gather(*first, *meanwhile)

    answers = asyncio.run(scenario())
    assert model.calls == [(5, "inference_0"), (7, "inference_0")]
    assert len(answers) == 12


def test_models_that_are_not_row_invariant_are_never_merged(executor, clock) -> None:
    model = CountingModel(KNeighborsClassifier())
    assert not model.row_invariant
    batcher = _batcher(executor, clock)
    asyncio.run(_concurrently(batcher, model, _parts(6, rows=2)))
    assert [rows for rows, _ in model.calls] == [2] * 6


def test_a_failing_call_fails_every_request_in_it(executor, clock) -> None:
    model = CountingModel(build_estimator("logistic_regression", 0))
    batcher = _batcher(executor, clock)
    model.fail_with = RuntimeError("model broke")

    async def run() -> list[object]:
        return await asyncio.gather(*(batcher.predict(model, p) for p in _parts(5)), return_exceptions=True)

    results = asyncio.run(run())
    # One alone, four merged, then each of the four alone: all five failed on their own rows.
    assert [rows for rows, _ in model.calls] == [1, 4, 1, 1, 1, 1]
    assert all(isinstance(r, RuntimeError) and str(r) == "model broke" for r in results)


@pytest.mark.parametrize("cost", [CHEAP, COSTLY], ids=["on the loop", "on the inference thread"])
def test_one_requests_rows_that_break_a_merged_call_fail_that_request_alone(executor, clock, cost) -> None:
    """A row the model cannot score (say, a scaler overflowing) fails its own request; the others
    merged with it are answered."""
    model = PoisonedModel(build_estimator("logistic_regression", 0), cost=cost)
    batcher = _batcher(executor, clock)
    parts = _parts(5)
    parts[2] = np.full_like(parts[2], POISON)

    async def run() -> list[object]:
        return await asyncio.gather(*(batcher.predict(model, p) for p in parts), return_exceptions=True)

    results = asyncio.run(run())
    assert isinstance(results[2], ValueError)
    for part, result in zip(parts[:2] + parts[3:], results[:2] + results[3:], strict=True):
        assert isinstance(result, Prediction)
        np.testing.assert_array_equal(result.probabilities, model.score(part).probabilities)


def test_after_a_failure_the_next_requests_still_run(executor, clock) -> None:
    model = CountingModel(build_estimator("logistic_regression", 0), cost=COSTLY)
    batcher = _batcher(executor, clock)
    model.fail_with = RuntimeError("transient")
    with pytest.raises(RuntimeError, match="transient"):
        asyncio.run(_concurrently(batcher, model, _parts(3)))
    model.fail_with = None
    assert len(asyncio.run(_concurrently(batcher, model, _parts(3)))) == 3


def test_a_request_after_a_quiet_spell_is_computed_at_once(executor, clock) -> None:
    model = CountingModel(build_estimator("logistic_regression", 0))
    batcher = _batcher(executor, clock)
    asyncio.run(_concurrently(batcher, model, _parts(1)))

    async def lone_request() -> bool:
        clock.advance(2 * IDLE_GAP)
        task = asyncio.ensure_future(batcher.predict(model, ROWS[:1]))
        await asyncio.sleep(0)  # one loop turn: an immediate answer is already there
        return task.done()

    assert asyncio.run(lone_request())


def test_a_request_within_the_idle_gap_waits_a_loop_turn_for_company(executor, clock) -> None:
    model = CountingModel(build_estimator("logistic_regression", 0))
    batcher = _batcher(executor, clock)
    asyncio.run(_concurrently(batcher, model, _parts(1)))

    async def soon_after() -> bool:
        clock.advance(IDLE_GAP / 2)
        task = asyncio.ensure_future(batcher.predict(model, ROWS[:1]))
        await asyncio.sleep(0)
        done = task.done()
        await task
        return done

    assert asyncio.run(soon_after()) is False
    assert [rows for rows, _ in model.calls] == [1, 1]


@pytest.mark.parametrize(("in_progress", "at_once"), [(1, True), (2, False)])
def test_right_after_another_a_request_is_computed_at_once_only_if_it_is_alone(
    executor, clock, in_progress: int, at_once: bool
) -> None:
    """A lone client's back-to-back requests do not wait a loop turn for company that cannot come."""
    model = CountingModel(build_estimator("logistic_regression", 0))
    in_flight = InFlight()
    batcher = _batcher(executor, clock, in_flight=in_flight)

    async def back_to_back() -> bool:
        await batcher.predict(model, ROWS[:1])
        in_flight.count = in_progress
        task = asyncio.ensure_future(batcher.predict(model, ROWS[1:2]))  # within IDLE_GAP
        await asyncio.sleep(0)
        done = task.done()
        await task
        return done

    assert asyncio.run(back_to_back()) is at_once


def test_max_wait_holds_a_batch_open_for_requests_that_come_later(executor, clock) -> None:
    """With BATCH_MAX_WAIT_MS, requests arriving over several loop turns share one call; without it
    each turn's arrivals would leave on their own."""
    model = CountingModel(build_estimator("logistic_regression", 0))
    max_wait = 1.0
    batcher = _batcher(executor, clock, max_wait=max_wait)

    async def scenario() -> tuple[list[tuple[int, str]], float]:
        loop = asyncio.get_running_loop()
        await batcher.predict(model, ROWS[:1])  # alone after a quiet spell: at once
        began = loop.time()
        waiting = []
        for part in _parts(3, first=1):
            waiting.append(asyncio.ensure_future(batcher.predict(model, part)))
            for _ in range(3):  # several loop turns between arrivals
                await asyncio.sleep(0)
        calls_before_the_wait = list(model.calls)
        await asyncio.gather(*waiting)
        return calls_before_the_wait, loop.time() - began

    calls_before_the_wait, waited = asyncio.run(scenario())
    assert calls_before_the_wait == [(1, "MainThread")]
    assert model.calls == [(1, "MainThread"), (3, "MainThread")]
    assert waited >= max_wait - 0.001  # the loop's timer, not this machine's speed: a lower bound


def test_without_max_wait_each_loop_turn_leaves_on_its_own(executor, clock) -> None:
    model = CountingModel(build_estimator("logistic_regression", 0))
    batcher = _batcher(executor, clock)

    async def scenario() -> None:
        await batcher.predict(model, ROWS[:1])
        waiting = []
        for part in _parts(3, first=1):
            waiting.append(asyncio.ensure_future(batcher.predict(model, part)))
            for _ in range(3):
                await asyncio.sleep(0)
        await asyncio.gather(*waiting)

    asyncio.run(scenario())
    assert model.calls == [(1, "MainThread")] * 4


class TimedModel(CountingModel):
    """A call takes 20 µs plus 1 µs a row on the clock it advances: a known cost line."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(build_estimator("logistic_regression", 0))
        self._clock = clock

    def score(self, features: np.ndarray) -> Prediction:
        self._clock.advance(20e-6 + 1e-6 * len(features))
        return super().score(features)


def test_calibration_measures_the_cost_line(clock) -> None:
    cost = calibrate(TimedModel(clock).score, ROWS[:1], clock=clock)
    assert cost.per_call == pytest.approx(20e-6)
    assert cost.per_row == pytest.approx(1e-6)


def test_cost_line_estimates_linearly() -> None:
    assert CallCost(per_call=10e-6, per_row=1e-6).estimate(100) == pytest.approx(110e-6)
