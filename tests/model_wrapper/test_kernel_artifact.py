"""A linear model is logged with its kernel's arrays, and a process that loads it scores with them
exactly as the estimator's compiled kernel does, without importing scikit-learn or skops."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from model_wrapper import save_classifier
from model_wrapper.estimator_io import load_estimator
from model_wrapper.kernels import LinearKernel, compile_kernel
from registry_scripts.dataset import load_frame
from registry_scripts.estimators import build_estimator

FEATURES, TARGET, _ = load_frame()
ROWS = FEATURES.to_numpy(dtype=np.float64)
CLASS_NAMES = ("malignant", "benign")

LOAD_IN_A_FRESH_PROCESS = """
import json, sys
import mlflow.pyfunc, numpy as np, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
rows = pd.DataFrame(np.ones((2, 30)), columns=[f"feature_{i}" for i in range(1, 31)])
model.predict(rows)
imported = sorted(name for name in ("sklearn", "skops", "joblib") if name in sys.modules)
estimator = type(model.unwrap_python_model().estimator).__name__
print(json.dumps({"imported_before_asked": imported, "estimator": estimator}))
"""


def _fitted(estimator: ClassifierMixin) -> ClassifierMixin:
    return estimator.fit(ROWS, TARGET.to_numpy())


@pytest.mark.parametrize(
    "estimator",
    [
        LogisticRegression(max_iter=5000),
        Pipeline(
            [("a", StandardScaler()), ("b", StandardScaler(with_mean=False)), ("c", LogisticRegression())]
        ),
        Pipeline([("a", StandardScaler(with_std=False)), ("b", LogisticRegression(max_iter=5000))]),
    ],
    ids=["bare", "two scalers", "centring only"],
)
def test_kernel_written_and_read_back_scores_bit_for_bit_the_same(
    estimator: ClassifierMixin, tmp_path: Path
) -> None:
    compiled = compile_kernel(_fitted(estimator))
    assert isinstance(compiled, LinearKernel)
    compiled.save(tmp_path / "kernel.npz")
    loaded = LinearKernel.load(tmp_path / "kernel.npz", feature_count=ROWS.shape[1])
    for mine, theirs in zip(compiled(ROWS), loaded(ROWS), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_kernel_of_the_wrong_width_is_refused(tmp_path: Path) -> None:
    compile_kernel(_fitted(build_estimator("logistic_regression", 0))).save(tmp_path / "kernel.npz")
    with pytest.raises(ValueError, match=r"kernel array 'mean_0' has shape \(30,\), not \(29,\)"):
        LinearKernel.load(tmp_path / "kernel.npz", feature_count=29)


def test_linear_champion_carries_the_kernel_of_its_estimator(champion_path: Path) -> None:
    loaded = LinearKernel.load(champion_path / "artifacts" / "kernel.npz", feature_count=ROWS.shape[1])
    estimator = load_estimator(champion_path / "artifacts" / "estimator.skops")
    for mine, theirs in zip(compile_kernel(estimator)(ROWS), loaded(ROWS), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_forest_is_logged_without_a_kernel(tmp_path: Path) -> None:
    forest = _fitted(build_estimator("random_forest", 0).set_params(n_estimators=5))
    save_classifier(forest, tmp_path / "forest", class_names=CLASS_NAMES, input_example=FEATURES.head(2))
    assert (tmp_path / "forest" / "artifacts" / "estimator.skops").is_file()
    assert not (tmp_path / "forest" / "artifacts" / "kernel.npz").exists()


def test_loading_a_linear_model_reads_the_estimator_only_when_asked(
    champion_path: Path, base_env: dict[str, str]
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", LOAD_IN_A_FRESH_PROCESS, str(champion_path)],
        env=base_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"imported_before_asked": [], "estimator": "Pipeline"}
