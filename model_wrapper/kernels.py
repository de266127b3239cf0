"""Scoring kernels: one estimator's `predict_proba`, computed so each row's answer depends on that
row alone.

A BLAS matrix product sums in an order that depends on how many rows it multiplies and how they
lie in memory, so one row can score a few ulps differently alone, in a batch, or in a pandas
frame. A server that stacks concurrent requests into one call must not change anyone's answer,
and `/invocations` must match `mlflow models serve` to the last bit; so the wrapper never scores
through a batch-dependent path when it knows a row-independent one:

- `LinearKernel`: standard scaling and binary logistic regression, with scikit-learn's own
  element-wise steps and `expit`, and the dot product as a per-row `einsum` over C-ordered rows.
  It also skips scikit-learn's per-call input checks (the caller has validated the input), which
  cost about fifty times the arithmetic on a single row.
- `EstimatorKernel`: anything else, through the estimator's `predict_proba`. Tree ensembles
  score each row on its own already; other estimators are marked not row-invariant, and the
  server then never batches their requests together.

A linear kernel is also written beside the estimator as a few plain arrays (`LinearKernel.save`),
so a server can score with it without importing scikit-learn or deserializing the estimator,
the slowest part of a server's start. scikit-learn is imported here only to
compile a kernel from an estimator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from scipy.special import expit

if TYPE_CHECKING:
    from sklearn.base import ClassifierMixin


class Kernel(Protocol):
    """Scores (n, features) float64 rows: (class index per row, (n, classes) probabilities)."""

    row_invariant: bool

    def __call__(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class LinearKernel:
    """Zero or more standard scalers, then a binary logistic regression."""

    scaling: tuple[tuple[np.ndarray | None, np.ndarray | None], ...]  # (mean, scale) per scaler
    weights: np.ndarray
    intercept: float
    row_invariant: bool = True
    # scikit-learn's own pipeline refuses a scaled value that is not finite (a huge input over a
    # small scale): set for a kernel standing in for that pipeline, so it refuses it too.
    refuse_non_finite: bool = False

    def __call__(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.array(features, dtype=np.float64, order="C", copy=True)
        for mean, scale in self.scaling:
            if mean is not None:
                rows -= mean
            if scale is not None:
                rows /= scale
        if self.refuse_non_finite and not np.isfinite(rows).all():
            raise ValueError("Input X contains infinity or a value too large for dtype('float64').")
        decision = np.einsum("ij,j->i", rows, self.weights)
        decision += self.intercept
        probabilities = np.empty((len(rows), 2))
        positive = expit(decision, out=probabilities[:, 1])
        np.subtract(1, positive, out=probabilities[:, 0])
        # scikit-learn predicts the second class exactly when the decision is positive.
        return (decision > 0).astype(np.intp), probabilities

    def save(self, path: Path) -> None:
        """Write the arrays as an `.npz` file: numbers only, loaded without pickle."""
        arrays: dict[str, np.ndarray] = {
            "weights": self.weights,
            "intercept": np.array(self.intercept, dtype=np.float64),
            "scalers": np.array(len(self.scaling)),
        }
        for position, (mean, scale) in enumerate(self.scaling):
            if mean is not None:
                arrays[f"mean_{position}"] = mean
            if scale is not None:
                arrays[f"scale_{position}"] = scale
        with path.open("wb") as file:
            np.savez(file, **arrays)

    @classmethod
    def load(cls, path: str | Path, feature_count: int) -> LinearKernel:
        """Read a kernel written by `save`, checking every array's shape against the features."""
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}

        def vector(name: str) -> np.ndarray:
            array = np.ascontiguousarray(arrays[name], dtype=np.float64)
            if array.shape != (feature_count,):
                raise ValueError(f"kernel array {name!r} has shape {array.shape}, not ({feature_count},)")
            return array

        scaling = tuple(
            (
                vector(f"mean_{position}") if f"mean_{position}" in arrays else None,
                vector(f"scale_{position}") if f"scale_{position}" in arrays else None,
            )
            for position in range(int(arrays["scalers"]))
        )
        return cls(scaling=scaling, weights=vector("weights"), intercept=float(arrays["intercept"]))


@dataclass(frozen=True)
class EstimatorKernel:
    """The estimator's own `predict_proba`; on an exact tie the first class wins."""

    estimator: ClassifierMixin
    row_invariant: bool

    def __call__(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probabilities = self.estimator.predict_proba(np.ascontiguousarray(features, dtype=np.float64))
        return probabilities.argmax(axis=1), probabilities


_Scaling = tuple[np.ndarray | None, np.ndarray | None]
_IDENTITY: _Scaling = (None, None)


def _scaling_step(step: object) -> _Scaling | None:
    """A standard scaler's (mean, scale), the identity for a skipped step, None for anything else."""
    from sklearn.preprocessing import StandardScaler

    if step is None or (isinstance(step, str) and step == "passthrough"):
        return _IDENTITY
    if type(step) is StandardScaler:
        mean = np.asarray(step.mean_, dtype=np.float64) if step.with_mean else None
        scale = np.asarray(step.scale_, dtype=np.float64) if step.with_std else None
        return (mean, scale)
    return None


def _linear_kernel(estimator: ClassifierMixin) -> LinearKernel | None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    steps = [s for _, s in estimator.steps] if type(estimator) is Pipeline else [estimator]
    *transforms, last = steps
    if type(last) is not LogisticRegression or len(last.classes_) != 2 or last.coef_.shape[0] != 1:
        return None
    scaling = [_scaling_step(step) for step in transforms]
    if any(s is None for s in scaling):
        return None
    return LinearKernel(
        scaling=tuple(s for s in scaling if s is not None and s is not _IDENTITY),
        weights=np.ascontiguousarray(last.coef_[0], dtype=np.float64),
        intercept=float(last.intercept_[0]),
    )


def row_invariant(estimator: ClassifierMixin) -> bool:
    """Whether `estimator.predict_proba` scores each row on its own: trees and gradient boosting,
    forests on one thread, and pipelines of element-wise scalers and imputers ending in one."""
    from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier, RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    if type(estimator) is Pipeline:
        *transforms, last = (step for _, step in estimator.steps)
        elementwise = (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler, SimpleImputer)
        skipped = (None, "passthrough")
        return all(s in skipped or type(s) in elementwise for s in transforms) and row_invariant(last)
    if isinstance(estimator, (DecisionTreeClassifier, GradientBoostingClassifier)):
        return True
    # Forests sum their trees in parallel when n_jobs > 1, in an order that varies run to run.
    ensembles = (RandomForestClassifier, ExtraTreesClassifier)
    return isinstance(estimator, ensembles) and estimator.n_jobs in (None, 1)


def compile_kernel(estimator: ClassifierMixin) -> Kernel:
    """The fastest row-invariant kernel for `estimator`, or its own `predict_proba`."""
    return _linear_kernel(estimator) or EstimatorKernel(estimator, row_invariant(estimator))
