"""Writing a fitted classifier as an MLflow pyfunc model: logged to a run, or saved to a folder."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import pandas as pd
from mlflow.models.model import ModelInfo

from model_wrapper import contract
from model_wrapper.classifier import DESCRIPTION_ARTIFACT, ESTIMATOR_ARTIFACT, KERNEL_ARTIFACT
from model_wrapper.description import ModelDescription
from model_wrapper.estimator_io import save_estimator
from model_wrapper.kernels import LinearKernel, compile_kernel

if TYPE_CHECKING:
    from sklearn.base import ClassifierMixin

MODEL_CODE_PATH = Path(__file__).with_name("model_code.py")

# Pinned at logging time so `mlflow models serve` and friends rebuild the same environment.
# Listing them explicitly also spares MLflow's slow requirement inference (a model load in a
# subprocess). `registry-serve` itself provides `model_wrapper`, which the model code imports.
_REQUIREMENTS = ("scikit-learn", "skops", "numpy", "pandas")


def _pip_requirements() -> list[str]:
    # mlflow's own version from the module: the API image has mlflow-skinny, not the `mlflow` distribution.
    return [f"mlflow=={mlflow.__version__}", *(f"{name}=={metadata.version(name)}" for name in _REQUIREMENTS)]


def describe(estimator: ClassifierMixin, class_names: Sequence[str]) -> ModelDescription:
    """The description of a fitted estimator over the contract's features."""
    return ModelDescription(
        feature_names=contract.FEATURE_NAMES,
        classes=tuple(int(c) for c in estimator.classes_),
        class_names=tuple(class_names),
        estimator=f"{type(estimator).__module__}.{type(estimator).__qualname__}",
    )


@contextmanager
def _pyfunc_arguments(
    estimator: ClassifierMixin, class_names: Sequence[str], input_example: pd.DataFrame
) -> Iterator[dict[str, Any]]:
    """The keyword arguments MLflow's `log_model` and `save_model` share, with artifact files."""
    with tempfile.TemporaryDirectory() as tmp:
        estimator_path = Path(tmp, "estimator.skops")
        description_path = Path(tmp, "description.json")
        save_estimator(estimator, estimator_path)
        describe(estimator, class_names).save(description_path)
        artifacts = {ESTIMATOR_ARTIFACT: str(estimator_path), DESCRIPTION_ARTIFACT: str(description_path)}
        kernel = compile_kernel(estimator)
        if isinstance(kernel, LinearKernel):
            kernel.save(kernel_path := Path(tmp, "kernel.npz"))
            artifacts[KERNEL_ARTIFACT] = str(kernel_path)
        yield {
            "python_model": str(MODEL_CODE_PATH),
            "artifacts": artifacts,
            "signature": contract.signature(class_names),
            "input_example": input_example.loc[:, list(contract.FEATURE_NAMES)],
            "pip_requirements": _pip_requirements(),
        }


def log_classifier(
    estimator: ClassifierMixin,
    *,
    class_names: Sequence[str],
    input_example: pd.DataFrame,
    name: str = "model",
    registered_model_name: str | None = None,
) -> ModelInfo:
    """Log `estimator` in the active run as a pyfunc model with the contract's signature.

    `input_example` is a few rows with the contract's feature columns; MLflow stores it with
    the model, and the server uses it to check a version before serving it.
    """
    with _pyfunc_arguments(estimator, class_names, input_example) as arguments:
        return mlflow.pyfunc.log_model(name=name, registered_model_name=registered_model_name, **arguments)


def save_classifier(
    estimator: ClassifierMixin, path: Path, *, class_names: Sequence[str], input_example: pd.DataFrame
) -> None:
    """Write `estimator` as a pyfunc model folder at `path`, exactly as `log_classifier` logs it."""
    with _pyfunc_arguments(estimator, class_names, input_example) as arguments:
        mlflow.pyfunc.save_model(path=str(path), **arguments)
