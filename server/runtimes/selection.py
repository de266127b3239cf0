"""Which runtime serves a model: the first of `RUNTIMES` that takes it.

Adding a flavour is one module with a `load(pyfunc, features)` function and one line here.
"""

from __future__ import annotations

from collections.abc import Callable

from mlflow.pyfunc import PyFuncModel

from server.runtimes import lightgbm, sklearn, wrapper, xgboost
from server.runtimes.base import ClassifierRuntime
from server.runtimes.signature import Features

# A runtime's loader: the runtime for this model, or None when the model is not of its flavour
# (or of a kind it cannot score, such as a regressor).
RuntimeLoader = Callable[[PyFuncModel, Features], ClassifierRuntime | None]

RUNTIMES: tuple[RuntimeLoader, ...] = (
    wrapper.load,
    sklearn.load,
    xgboost.load,
    lightgbm.load,
)

GENERIC = "pyfunc"  # the name /model/metadata gives MLflow's generic path


def select_runtime(pyfunc: PyFuncModel, features: Features | None) -> ClassifierRuntime | None:
    """The runtime for `pyfunc`, or None for MLflow's generic path: a model whose signature does
    not name its columns, has a column that is not a double, or that no runtime takes."""
    if features is None or not features.all_double:
        return None
    for load in RUNTIMES:
        runtime = load(pyfunc, features)
        if runtime is not None:
            return runtime
    return None
