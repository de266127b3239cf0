"""A model ready to serve: the pyfunc, the runtime that scores it natively when one takes it, and
its facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PyFuncModel

from model_wrapper.reference_profile import ReferenceProfile
from server.runtimes.base import ClassifierRuntime
from server.runtimes.selection import GENERIC, select_runtime
from server.runtimes.signature import Features, FeatureSpec, features_of

__all__ = ["FeatureSpec", "LoadedModel", "ModelSource", "build_loaded_model"]


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

    `runtime` scores rows natively (`server.runtimes`); without one, MLflow's generic pyfunc path
    serves the model. Compared and hashed by identity: two loads of one version are still two
    snapshots.
    """

    source: ModelSource
    pyfunc: PyFuncModel
    runtime: ClassifierRuntime | None
    signature_features: Features | None
    example: pd.DataFrame | None
    local_dir: Path | None
    loaded_at: datetime
    # The training data's profile, for drift (None: the version has none, for `reference_problem`).
    reference_profile: ReferenceProfile | None = None
    reference_problem: str | None = None

    @property
    def features(self) -> tuple[FeatureSpec, ...] | None:
        return None if self.signature_features is None else self.signature_features.specs

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        return None if self.signature_features is None else self.signature_features.names

    @property
    def runtime_name(self) -> str:
        return GENERIC if self.runtime is None else self.runtime.name

    def warm_up(self) -> None:
        """Measure the runtime's call cost on a row of the input example (which warms it up),
        before any request competes for the CPU."""
        if self.runtime is None:
            return
        names = list(self.feature_names or ())
        if self.example is not None and len(self.example):
            sample = self.example.loc[:, names].to_numpy(dtype=np.float64)[:1]
        else:
            sample = np.zeros((1, len(names)))
        self.runtime.measure_cost(sample)

    def signature(self) -> dict[str, Any] | None:
        signature = self.pyfunc.metadata.signature
        return None if signature is None else signature.to_dict()


def _example(pyfunc: PyFuncModel) -> pd.DataFrame | None:
    try:
        example = pyfunc.input_example
    except Exception:  # noqa: BLE001 - a model without a readable example is still servable
        return None
    return example if isinstance(example, pd.DataFrame) else None


def build_loaded_model(
    source: ModelSource,
    pyfunc: PyFuncModel,
    local_dir: Path | None,
    reference: tuple[ReferenceProfile | None, str | None] = (None, "the model has no registry run"),
) -> LoadedModel:
    """Inspect a freshly loaded pyfunc once, so serving never has to."""
    features = features_of(pyfunc)
    runtime = select_runtime(pyfunc, features)
    return LoadedModel(
        source=source,
        pyfunc=pyfunc,
        runtime=runtime,
        signature_features=features,
        example=_example(pyfunc),
        local_dir=local_dir,
        loaded_at=datetime.now(UTC),
        reference_profile=reference[0],
        reference_problem=reference[1],
    )
