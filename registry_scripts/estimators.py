"""The model types `train` offers, each a scikit-learn classifier with `predict_proba`."""

from __future__ import annotations

from collections.abc import Callable

from sklearn.base import ClassifierMixin
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def _logistic_regression(seed: int) -> ClassifierMixin:
    return Pipeline(
        [
            ("scaler", StandardScaler()),
            ("classifier", LogisticRegression(max_iter=1000, random_state=seed)),
        ]
    )


def _random_forest(seed: int) -> ClassifierMixin:
    return RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=1)


def _gradient_boosting(seed: int) -> ClassifierMixin:
    return GradientBoostingClassifier(random_state=seed)


BUILDERS: dict[str, Callable[[int], ClassifierMixin]] = {
    "logistic_regression": _logistic_regression,
    "random_forest": _random_forest,
    "gradient_boosting": _gradient_boosting,
}
DEFAULT_MODEL_TYPE = "logistic_regression"


def build_estimator(model_type: str, seed: int) -> ClassifierMixin:
    """A fresh, unfitted estimator of `model_type`."""
    try:
        return BUILDERS[model_type](seed)
    except KeyError:
        raise ValueError(f"unknown model type {model_type!r}; choose from {sorted(BUILDERS)}") from None
