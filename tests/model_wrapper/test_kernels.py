"""Kernels score each row the same whatever batch or memory layout it comes in, and agree with
scikit-learn's own `predict` and `predict_proba`."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from model_wrapper.kernels import EstimatorKernel, LinearKernel, compile_kernel
from registry_scripts.dataset import load_frame
from registry_scripts.estimators import BUILDERS, build_estimator

FEATURES, TARGET, _ = load_frame()
ROWS = FEATURES.to_numpy(dtype=np.float64)


def _fitted(estimator: ClassifierMixin) -> ClassifierMixin:
    return estimator.fit(ROWS, TARGET.to_numpy())


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def fitted(request: pytest.FixtureRequest) -> ClassifierMixin:
    estimator = build_estimator(request.param, 0)
    if request.param == "random_forest":
        estimator.set_params(n_estimators=20)
    return _fitted(estimator)


def test_every_training_model_type_gets_a_row_invariant_kernel(fitted: ClassifierMixin) -> None:
    assert compile_kernel(fitted).row_invariant


def test_a_row_scores_the_same_alone_in_batches_and_in_any_layout(fitted: ClassifierMixin) -> None:
    kernel = compile_kernel(fitted)
    whole_index, whole = kernel(ROWS)
    alone = np.concatenate([kernel(ROWS[i : i + 1])[1] for i in range(len(ROWS))])
    chunks = np.concatenate([kernel(ROWS[i : i + 37])[1] for i in range(0, len(ROWS), 37)])
    shuffled_order = np.random.default_rng(0).permutation(len(ROWS))
    shuffled = np.empty_like(whole)
    shuffled[shuffled_order] = kernel(ROWS[shuffled_order])[1]
    fortran = kernel(np.asfortranarray(ROWS))[1]
    for other in (alone, chunks, shuffled, fortran):
        np.testing.assert_array_equal(other, whole)
    np.testing.assert_array_equal(kernel(ROWS[::-1])[0], whole_index[::-1])


def test_kernel_agrees_with_scikit_learn(fitted: ClassifierMixin) -> None:
    index, probabilities = compile_kernel(fitted)(ROWS)
    np.testing.assert_array_equal(fitted.classes_[index], fitted.predict(ROWS))
    np.testing.assert_allclose(probabilities, fitted.predict_proba(ROWS), rtol=1e-12, atol=1e-15)


def test_kernel_does_not_modify_its_input() -> None:
    kernel = compile_kernel(_fitted(build_estimator("logistic_regression", 0)))
    rows = ROWS[:5].copy()
    kernel(rows)
    np.testing.assert_array_equal(rows, ROWS[:5])


@pytest.mark.parametrize(
    "estimator",
    [
        LogisticRegression(max_iter=5000),
        Pipeline(
            [("a", StandardScaler()), ("b", StandardScaler(with_mean=False)), ("c", LogisticRegression())]
        ),
        Pipeline(
            [
                ("a", "passthrough"),
                ("b", StandardScaler(with_std=False)),
                ("c", LogisticRegression(max_iter=5000)),
            ]
        ),
    ],
    ids=["bare", "two scalers", "passthrough and centring"],
)
def test_linear_pipelines_get_the_linear_kernel(estimator: ClassifierMixin) -> None:
    fitted = _fitted(estimator)
    kernel = compile_kernel(fitted)
    assert isinstance(kernel, LinearKernel)
    index, probabilities = kernel(ROWS)
    np.testing.assert_array_equal(fitted.classes_[index], fitted.predict(ROWS))
    np.testing.assert_allclose(probabilities, fitted.predict_proba(ROWS), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "estimator",
    [Pipeline([("a", MinMaxScaler()), ("b", LogisticRegression())]), KNeighborsClassifier()],
    ids=["other scaler", "other estimator"],
)
def test_anything_else_uses_the_estimator_and_is_not_batched(estimator: ClassifierMixin) -> None:
    kernel = compile_kernel(_fitted(estimator))
    assert isinstance(kernel, EstimatorKernel)
    assert kernel.row_invariant is False
