"""Loading a downloaded model folder as MLflow's `PyFuncModel`, with one exception to MLflow's
own loader: a scikit-learn estimator stored with skops (an `mlflow.sklearn` model, or an
`LGBMClassifier` logged with `mlflow.lightgbm`), while unpickling is off.

MLflow gates every such model behind `MLFLOW_ALLOW_PICKLE_DESERIALIZATION`, skops included,
because it loads skops files trusting whatever types the model's own MLmodel file lists
(`skops_trusted_types`), which a crafted model can fill with dangerous ones. This server does not
read that list: it loads the file with skops' defaults plus an allowlist of its own (the wrapper's,
`model_wrapper.estimator_io`, and for LightGBM its booster and classifier), and refuses a file
holding any other type. So a data scientist's `mlflow.sklearn.log_model` or an `LGBMClassifier`
(skops is MLflow's default for both) serves with ALLOW_PICKLED_MODELS=false; a pickled one, as
`mlflow.sklearn.autolog()` writes, still needs ALLOW_PICKLED_MODELS=true (docs/security.md).

`PyFuncModel`'s constructor is documented as MLflow's own to call; this is the one module that
calls it, and `tests/server/test_library_adapters.py` fails loudly when an upgrade changes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.environment_variables import MLFLOW_ALLOW_PICKLE_DESERIALIZATION
from mlflow.models import Model
from mlflow.pyfunc import PyFuncModel

from model_wrapper.estimator_io import load_estimator


@dataclass(frozen=True)
class SkopsFlavour:
    """Where a flavour keeps its skops file, which model class it applies to (None: any), and the
    types it needs beyond the wrapper's allowlist."""

    file_key: str
    model_class: str | None = None
    also_trusted: frozenset[str] = frozenset()


# loader module -> (flavour name, how it stores a scikit-learn estimator with skops)
SKOPS_FLAVOURS: dict[str, tuple[str, SkopsFlavour]] = {
    "mlflow.sklearn": ("sklearn", SkopsFlavour("pickled_model")),
    "mlflow.lightgbm": (
        "lightgbm",
        SkopsFlavour(
            "data",
            model_class="lightgbm.sklearn.LGBMClassifier",
            # The booster rebuilds from its model text; nothing in either runs code on load.
            also_trusted=frozenset(
                {"lightgbm.basic.Booster", "lightgbm.sklearn.LGBMClassifier", "collections.OrderedDict"}
            ),
        ),
    ),
}
# The methods `mlflow.sklearn.log_model(pyfunc_predict_fn=...)` may name, besides `predict`.
_PREDICT_FUNCTIONS = ("predict_proba", "predict_log_proba", "predict_joint_log_proba", "score")


class SkopsModel:
    """The pyfunc implementation of an skops-stored scikit-learn estimator: its own methods, called
    as MLflow's sklearn and lightgbm flavours call them."""

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
    scikit-learn estimators while MLflow may not unpickle (loaded with the server's allowlist)."""
    meta = Model.load(path)
    stored = _skops_file(meta)
    if stored is not None and not MLFLOW_ALLOW_PICKLE_DESERIALIZATION.get():
        return _skops_pyfunc(Path(path), meta, *stored)
    return mlflow.pyfunc.load_model(path, suppress_warnings=True)


def _skops_file(meta: Model) -> tuple[str, frozenset[str]] | None:
    """The skops file of a scikit-learn estimator and the types it may hold, or None."""
    loader = meta.flavors.get("python_function", {}).get("loader_module")
    if loader not in SKOPS_FLAVOURS:
        return None
    flavour_name, flavour = SKOPS_FLAVOURS[loader]
    conf = meta.flavors.get(flavour_name, {})
    if conf.get("serialization_format") != "skops":
        return None
    if flavour.model_class is not None and conf.get("model_class") != flavour.model_class:
        return None
    return conf[flavour.file_key], flavour.also_trusted


def _skops_pyfunc(path: Path, meta: Model, file: str, also_trusted: frozenset[str]) -> PyFuncModel:
    stored = (path / file).resolve()
    if not stored.is_relative_to(path.resolve()):
        raise ValueError(f"the model's MLmodel file names a file outside the model's folder: {file!r}")
    estimator = load_estimator(stored, also_trusted)
    pyfunc = PyFuncModel(
        model_meta=meta,
        model_impl=SkopsModel(estimator),
        predict_fn=meta.flavors["python_function"].get("predict_fn", "predict"),
        model_id=meta.model_id,
    )
    try:
        pyfunc.input_example = meta.load_input_example(path=str(path))
    except Exception:  # noqa: BLE001 - as MLflow: a model without a readable example still loads
        pyfunc.input_example = None
    return pyfunc
