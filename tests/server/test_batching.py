"""The adaptive batcher: concurrent requests share calls, answers never change, failures reach
everyone, and nothing waits needlessly."""

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
from server.batching import AdaptiveBatcher
from server.call_cost import CallCost, calibrate
from server.in_flight import InFlight

FEATURES, TARGET, NAMES = load_frame()
ROWS = FEATURES.to_numpy(dtype=np.float64)


class CountingModel(SklearnClassifierModel):
    """The real wrapper, recording each call's row count and thread."""

    def __init__(self, estimator: ClassifierMixin) -> None:
        super().__init__()
        self.calls: list[tuple[int, str]] = []
        self.fail_with: Exception | None = None
        self._bind(estimator.fit(ROWS, TARGET.to_numpy()), describe(estimator, NAMES))
        self.cost = calibrate(self, ROWS.shape[1])
        self.calls.clear()

    def predict_array(self, features: np.ndarray) -> Prediction:
        self.calls.append((len(features), threading.current_thread().name))
        if self.fail_with is not None:
            raise self.fail_with
        return super().predict_array(features)


@pytest.fixture
def executor():
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference") as pool:
        yield pool


def _batcher(executor, **overrides) -> AdaptiveBatcher:
    options = {"max_rows": 1024, "max_wait": 0.0, "inline_budget": 250e-6} | overrides
    return AdaptiveBatcher(executor, **options)


async def _concurrently(batcher: AdaptiveBatcher, model: CountingModel, parts: list[np.ndarray]):
    return await asyncio.gather(*(batcher.predict(model, model.cost, part) for part in parts))


def _parts(count: int, rows: int = 1) -> list[np.ndarray]:
    return [ROWS[i * rows : (i + 1) * rows] for i in range(count)]


def test_concurrent_requests_share_one_call_and_keep_their_own_rows(executor) -> None:
    model = CountingModel(build_estimator("logistic_regression", 0))
    batcher = _batcher(executor)
    model.calls.clear()
    parts = _parts(16, rows=3)
    answers = asyncio.run(_concurrently(batcher, model, parts))
    # The first of a burst after a quiet spell is served at once; the fifteen behind it share a call.
    assert model.calls == [(3, "MainThread"), (45, "MainThread")]
    for part, answer in zip(parts, answers, strict=True):
        alone = model.predict_array(part)
        np.testing.assert_array_equal(answer.probabilities, alone.probabilities)
        np.testing.assert_array_equal(answer.classes, alone.classes)
        np.testing.assert_array_equal(answer.labels, alone.labels)


def test_batches_never_exceed_max_rows(executor) -> None:
    model = CountingModel(build_estimator("logistic_regression", 0))
    batcher = _batcher(executor, max_rows=10)
    asyncio.run(_concurrently(batcher, model, _parts(12, rows=3)))
    assert [rows for rows, _ in model.calls] == [3, 9, 9, 9, 6]


def test_costly_calls_run_on_the_inference_thread_and_batch_meanwhile(executor) -> None:
    model = CountingModel(build_estimator("logistic_regression", 0))
    batcher = _batcher(executor, inline_budget=0.0)
    asyncio.run(_concurrently(batcher, model, _parts(20)))
    assert {thread for _, thread in model.calls} == {"inference_0"}
    assert sum(rows for rows, _ in model.calls) == 20
    assert len(model.calls) < 20


def test_models_that_are_not_row_invariant_are_never_merged(executor) -> None:
    model = CountingModel(KNeighborsClassifier())
    assert not model.row_invariant
    batcher = _batcher(executor)
    asyncio.run(_concurrently(batcher, model, _parts(6, rows=2)))
    assert [rows for rows, _ in model.calls] == [2] * 6


def test_a_failing_call_fails_every_request_in_it(executor) -> None:
    model = CountingModel(build_estimator("logistic_regression", 0))
    batcher = _batcher(executor)
    model.fail_with = RuntimeError("model broke")

    async def run() -> list[object]:
        return await asyncio.gather(
            *(batcher.predict(model, model.cost, p) for p in _parts(5)), return_exceptions=True
        )

    results = asyncio.run(run())
    assert all(isinstance(r, RuntimeError) and str(r) == "model broke" for r in results)


def test_after_a_failure_the_next_requests_still_run(executor) -> None:
    model = CountingModel(build_estimator("logistic_regression", 0))
    batcher = _batcher(executor, inline_budget=0.0)
    model.fail_with = RuntimeError("transient")
    with pytest.raises(RuntimeError, match="transient"):
        asyncio.run(_concurrently(batcher, model, _parts(3)))
    model.fail_with = None
    assert len(asyncio.run(_concurrently(batcher, model, _parts(3)))) == 3


def test_a_request_on_an_idle_server_is_computed_at_once(executor) -> None:
    model = CountingModel(build_estimator("logistic_regression", 0))
    batcher = _batcher(executor)
    asyncio.run(_concurrently(batcher, model, _parts(1)))

    async def lone_request() -> bool:
        await asyncio.sleep(0.01)  # longer than IDLE_GAP
        task = asyncio.ensure_future(batcher.predict(model, model.cost, ROWS[:1]))
        await asyncio.sleep(0)  # one loop turn: an immediate answer is already there
        return task.done()

    assert asyncio.run(lone_request())


@pytest.mark.parametrize(("in_progress", "at_once"), [(1, True), (2, False)])
def test_right_after_another_a_request_is_computed_at_once_only_if_it_is_alone(
    executor, in_progress: int, at_once: bool
) -> None:
    """A lone client's back-to-back requests do not wait a loop turn for company that cannot come."""
    model = CountingModel(build_estimator("logistic_regression", 0))
    in_flight = InFlight()
    batcher = _batcher(executor, in_flight=in_flight)

    async def back_to_back() -> bool:
        await batcher.predict(model, model.cost, ROWS[:1])
        in_flight.count = in_progress
        task = asyncio.ensure_future(batcher.predict(model, model.cost, ROWS[1:2]))  # within IDLE_GAP
        await asyncio.sleep(0)
        done = task.done()
        await task
        return done

    assert asyncio.run(back_to_back()) is at_once


def test_calibration_measures_a_positive_cost() -> None:
    cost = CountingModel(build_estimator("logistic_regression", 0)).cost
    assert 0 < cost.estimate(1) < cost.estimate(1000)


def test_cost_line_estimates_linearly() -> None:
    assert CallCost(per_call=10e-6, per_row=1e-6).estimate(100) == pytest.approx(110e-6)
