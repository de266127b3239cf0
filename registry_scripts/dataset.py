"""The training data: scikit-learn's bundled breast-cancer set, with the contract's feature names.

Bundled with scikit-learn, so training never downloads anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from model_wrapper.contract import FEATURE_NAMES


@dataclass(frozen=True)
class Dataset:
    """A stratified train/test split and the names of the classes (index = class value)."""

    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    class_names: tuple[str, ...]


def load_frame() -> tuple[pd.DataFrame, pd.Series, tuple[str, ...]]:
    """All 569 rows as a frame with columns `feature_1` … `feature_30`, the target and class names."""
    bunch = load_breast_cancer()
    features = pd.DataFrame(bunch.data, columns=list(FEATURE_NAMES))
    target = pd.Series(bunch.target, name="target")
    return features, target, tuple(str(n) for n in bunch.target_names)


def load_dataset(*, test_size: float = 0.2, seed: int = 42) -> Dataset:
    """Split the data, stratified on the target so both halves keep the class balance."""
    features, target, class_names = load_frame()
    x_train, x_test, y_train, y_test = train_test_split(
        features, target, test_size=test_size, random_state=seed, stratify=target
    )
    return Dataset(x_train, x_test, y_train, y_test, class_names)
