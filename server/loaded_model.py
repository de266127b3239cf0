"""A model ready to serve: the pyfunc, its fast numpy entry point when it has one, and its facts."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PyFuncModel
from mlflow.types.schema import ColSpec

from model_wrapper import SklearnClassifierModel
from server.call_cost import CallCost, calibrate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSpec:
    """One input column of the model's signature."""

    name: str
    type: str
    required: bool


@dataclass(frozen=True)
class ModelSource:
    """Where a model came from: the configured URI and what the registry said about it."""

    uri: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    download_uri: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """An immutable snapshot of one loaded model; swapping models swaps whole snapshots.

    Compared and hashed by identity: two loads of one version are still two snapshots.
    """

    source: ModelSource
    pyfunc: PyFuncModel
    fast: SklearnClassifierModel | None
    call_cost: CallCost | None  # measured at load for the fast path
    features: tuple[FeatureSpec, ...] | None
    example: pd.DataFrame | None
    local_dir: Path | None
    loaded_at: datetime

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        return None if self.features is None else tuple(f.name for f in self.features)

    @property
    def class_names(self) -> tuple[str, ...] | None:
        return None if self.fast is None else self.fast.description.class_names

    def signature(self) -> dict[str, Any] | None:
        signature = self.pyfunc.metadata.signature
        return None if signature is None else signature.to_dict()


def _features(pyfunc: PyFuncModel) -> tuple[FeatureSpec, ...] | None:
    schema = pyfunc.metadata.get_input_schema()
    if schema is None or not schema.has_input_names() or schema.is_tensor_spec():
        return None
    if not all(isinstance(spec, ColSpec) for spec in schema.inputs):
        return None
    return tuple(FeatureSpec(s.name, getattr(s.type, "name", str(s.type)), s.required) for s in schema.inputs)


def _fast_path(
    pyfunc: PyFuncModel, features: tuple[FeatureSpec, ...] | None
) -> SklearnClassifierModel | None:
    """The numpy entry point, when the model is ours and its columns are all doubles."""
    try:
        python_model = pyfunc.unwrap_python_model()
    except Exception:  # noqa: BLE001 - any non-PythonModel flavour simply has no fast path
        return None
    if not isinstance(python_model, SklearnClassifierModel) or features is None:
        return None
    names = tuple(f.name for f in features)
    if names != python_model.description.feature_names or any(f.type != "double" for f in features):
        logger.warning("model signature and description disagree; serving through the pyfunc path")
        return None
    return python_model


def _example(pyfunc: PyFuncModel) -> pd.DataFrame | None:
    try:
        example = pyfunc.input_example
    except Exception:  # noqa: BLE001 - a model without a readable example is still servable
        return None
    return example if isinstance(example, pd.DataFrame) else None


def build_loaded_model(source: ModelSource, pyfunc: PyFuncModel, local_dir: Path | None) -> LoadedModel:
    """Inspect a freshly loaded pyfunc once, so serving never has to; time the fast path's calls
    (this also warms it up) before any request competes for the CPU."""
    features = _features(pyfunc)
    fast = _fast_path(pyfunc, features)
    return LoadedModel(
        source=source,
        pyfunc=pyfunc,
        fast=fast,
        call_cost=calibrate(fast, len(features or ())) if fast is not None else None,
        features=features,
        example=_example(pyfunc),
        local_dir=local_dir,
        loaded_at=datetime.now(UTC),
    )
