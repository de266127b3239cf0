"""Loading a downloaded model folder as MLflow's `PyFuncModel`, with one exception to MLflow's
own loader: an `mlflow.sklearn` model stored with skops, while unpickling is off.

MLflow gates every `mlflow.sklearn` model behind `MLFLOW_ALLOW_PICKLE_DESERIALIZATION`, skops
included, because it loads skops files trusting whatever types the model's own MLmodel file lists
(`skops_trusted_types`), which a crafted model can fill with dangerous ones. This server does not
read that list: it loads the file with skops' defaults plus the wrapper's allowlist
(`model_wrapper.estimator_io`), and refuses a file holding any other type. So a data scientist's
`mlflow.sklearn.log_model` (skops is its default) serves with ALLOW_PICKLED_MODELS=false, and a
pickled one still needs ALLOW_PICKLED_MODELS=true (docs/security.md).

`PyFuncModel`'s constructor is documented as MLflow's own to call; this is the one module that
calls it, and `tests/server/test_library_adapters.py` fails loudly when an upgrade changes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
from mlflow.environment_variables import MLFLOW_ALLOW_PICKLE_DESERIALIZATION
from mlflow.models import Model
from mlflow.pyfunc import PyFuncModel

from model_wrapper.estimator_io import load_estimator

SKLEARN_LOADER = "mlflow.sklearn"
# The methods `mlflow.sklearn.log_model(pyfunc_predict_fn=...)` may name, besides `predict`.
_PREDICT_FUNCTIONS = ("predict_proba", "predict_log_proba", "predict_joint_log_proba", "score")


class SkopsSklearnModel:
    """The pyfunc implementation of an skops-stored scikit-learn model: the estimator's own methods,
    called as MLflow's sklearn flavour calls them."""

    def __init__(self, estimator: Any) -> None:
        self._estimator = estimator
        for name in _PREDICT_FUNCTIONS:
            if (method := getattr(estimator, name, None)) is not None:
                setattr(self, name, method)

    def get_raw_model(self) -> Any:
        return self._estimator

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        return self._estimator.predict(data)


def load_pyfunc(path: str) -> PyFuncModel:
    """The model in folder `path`, as `mlflow.pyfunc.load_model` loads it, but for skops-stored
    scikit-learn models while MLflow may not unpickle (loaded with the server's allowlist)."""
    meta = Model.load(path)
    if _skops_sklearn(meta) and not MLFLOW_ALLOW_PICKLE_DESERIALIZATION.get():
        return _skops_pyfunc(Path(path), meta)
    return mlflow.pyfunc.load_model(path, suppress_warnings=True)


def _skops_sklearn(meta: Model) -> bool:
    pyfunc = meta.flavors.get("python_function", {})
    sklearn = meta.flavors.get("sklearn", {})
    return pyfunc.get("loader_module") == SKLEARN_LOADER and sklearn.get("serialization_format") == "skops"


def _skops_pyfunc(path: Path, meta: Model) -> PyFuncModel:
    estimator = load_estimator(path / meta.flavors["sklearn"]["pickled_model"])
    pyfunc = PyFuncModel(
        model_meta=meta,
        model_impl=SkopsSklearnModel(estimator),
        predict_fn=meta.flavors["python_function"].get("predict_fn", "predict"),
        model_id=meta.model_id,
    )
    try:
        pyfunc.input_example = meta.load_input_example(path=str(path))
    except Exception:  # noqa: BLE001 - as MLflow: a model without a readable example still loads
        pyfunc.input_example = None
    return pyfunc
