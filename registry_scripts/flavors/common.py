"""What every flavour shares: the float64 feature frame, the signature check, metrics, requirements.

Every version, whatever its flavour, takes exactly the contract's 30 required `double` columns and
carries a 5-row input example, so a server can check any of them the same way before serving it.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from types import ModuleType
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature, infer_signature

from model_wrapper import contract
from model_wrapper.reference_profile import ReferenceProfile
from registry_scripts.cli import CliError
from registry_scripts.dataset import Dataset
from registry_scripts.metrics import held_out_metrics

INPUT_EXAMPLE_ROWS = 5


def features(frame: pd.DataFrame) -> pd.DataFrame:
    """The contract's columns in order, as float64: what a model is fitted on and signed with
    (an integer column would be signed `long` and refuse the doubles a client sends)."""
    return frame.loc[:, list(contract.FEATURE_NAMES)].astype("float64")


def input_example(data: Dataset) -> pd.DataFrame:
    return features(data.x_test).head(INPUT_EXAMPLE_ROWS)


def check_inputs(signature: ModelSignature | None, where: str) -> None:
    """Refuse a signature whose inputs are not exactly the contract's 30 required doubles."""
    if signature is None or signature.inputs != contract.input_schema():
        found = None if signature is None else signature.inputs
        raise CliError(f"{where}: the signature's inputs are not the 30 required doubles: {found}")


def signature(data: Dataset, output: Any) -> ModelSignature:
    """The signature of a model answering `output` to the input example."""
    inferred = infer_signature(input_example(data), output)
    check_inputs(inferred, "inferred signature")
    return inferred


def reference_profile(data: Dataset) -> ReferenceProfile:
    """The profile of the training split that drift is measured against, whatever the flavour."""
    return ReferenceProfile.build(
        features(data.x_train).to_numpy(), contract.FEATURE_NAMES, data.y_train.to_numpy(), data.class_names
    )


def class_metadata(data: Dataset) -> dict[str, Any]:
    """The model's metadata: the class names in class-value order, so a server can label classes."""
    return {"class_names": list(data.class_names)}


def log_held_out_metrics(data: Dataset, predicted: np.ndarray, probabilities: np.ndarray) -> None:
    mlflow.log_metrics(held_out_metrics(data.y_test.to_numpy(), predicted, probabilities))


def two_columns(positive: np.ndarray) -> np.ndarray:
    """A binary model's positive-class probabilities as one column per class."""
    return np.column_stack([1.0 - positive, positive])


def require(module: str, extra: str) -> ModuleType:
    """Import an optional dependency when its flavour is chosen, or say which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise CliError(f"{module} is not installed: pip install 'registry-serve[{extra}]'") from None


# The distributions that may provide a module, first match wins: xgboost's CPU-only build is its own
# distribution (`xgboost-cpu`) with the same `xgboost` module.
_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "sklearn": ("scikit-learn",),
    "xgboost": ("xgboost", "xgboost-cpu"),
}


def _pinned(module: str) -> str:
    """`distribution==version` for the installed distribution providing `module`."""
    candidates = _DISTRIBUTIONS.get(module, (module,))
    for distribution in candidates:
        try:
            return f"{distribution}=={metadata.version(distribution)}"
        except metadata.PackageNotFoundError:
            continue
    raise CliError(f"none of {list(candidates)} is installed")


def pip_requirements(*modules: str) -> list[str]:
    """Pinned requirements of a logged model, for the modules it needs beyond numpy and pandas.
    Naming them spares MLflow's requirement inference, which loads the model again in a
    subprocess and takes seconds."""
    return [f"mlflow=={mlflow.__version__}", *(_pinned(m) for m in ("numpy", "pandas", *modules))]


def log_flavour_model(flavour: str, model: Any, data: Dataset, output: Any, *requirements: str) -> str:
    """Log `model` with `mlflow.<flavour>.log_model` as every flavour here logs it: the 30-double
    signature, the input example, the class names, pinned requirements; the logged model's URI.
    The flavour's own module (`xgboost`, `lightgbm`) must be installed: its extra, else one line."""
    require(flavour, flavour)
    log_model = importlib.import_module(f"mlflow.{flavour}").log_model
    info = log_model(
        model,
        name="model",
        signature=signature(data, output),
        input_example=input_example(data),
        metadata=class_metadata(data),
        pip_requirements=pip_requirements(flavour, *requirements),
    )
    return info.model_uri
