"""The Open Inference Protocol's data plane, shared by its REST and gRPC endpoints.

Protocol-neutral: it takes a model name and version as the paths or messages name them, and a
`TensorRequest` a codec decoded, and gives back the served variant, the model's metadata, or the
prediction and its output tensors. A version names a variant: the champion's version, or the
challenger's, which lets a client ask the challenger directly; without one, the variant policy
chooses, as on every other route.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Any
from weakref import WeakKeyDictionary

import numpy as np

from model_wrapper import Prediction
from server.codecs.tensors import FEATURE_DATATYPE, OutputLayout, OutputTensor, TensorLayout, TensorRequest
from server.errors import BadRequest, NotFound
from server.inference.predictor import Inference, refuse_unscorable
from server.inference.variants import Served, VariantRouter
from server.live.loaded_model import LoadedModel

SERVER_NAME = "registry-serve"
PLATFORM = "mlflow"
EXTENSIONS = ("binary_tensor_data",)
LOCAL_MODEL_NAME = "model"


def protocol_model_name(configured: str | None, model: LoadedModel) -> str:
    """The name the protocols serve `model` under: MODEL_NAME, else its registered name."""
    return configured or model.source.name or LOCAL_MODEL_NAME


@dataclass(frozen=True, slots=True)
class ModelLayouts:
    inputs: TensorLayout
    outputs: OutputLayout


_layouts: WeakKeyDictionary[LoadedModel, ModelLayouts] = WeakKeyDictionary()


def layouts_of(model: LoadedModel) -> ModelLayouts:
    """The model's tensor layouts, made on first use and dropped with the model. Only a model
    with named columns and a classifier runtime speaks the protocol here."""
    layouts = _layouts.get(model)
    if layouts is None:
        runtime = model.runtime
        if model.feature_names is None or runtime is None:
            raise BadRequest(
                "this model is served through MLflow's generic pyfunc path, which the Open Inference "
                "Protocol does not reach here; send it MLflow's protocol on /invocations",
                error_code="UNSUPPORTED_BY_MODEL",
            )
        layouts = _layouts[model] = ModelLayouts(
            TensorLayout(model.feature_names), OutputLayout(runtime.classes, runtime.class_names)
        )
    return layouts


@dataclass(frozen=True, slots=True)
class InferAnswer:
    """What a request was answered with: the rows it held, the prediction, the output tensors."""

    served: Served
    model_name: str
    features: np.ndarray
    prediction: Prediction
    outputs: list[OutputTensor]


class OpenInference:
    """Resolves protocol model names and versions to variants, describes models, and infers."""

    def __init__(
        self, router: VariantRouter, inference: Inference, model_name: str | None, max_rows: int
    ) -> None:
        self._router = router
        self._inference = inference
        self._configured_name = model_name
        self._max_rows = max_rows
        self.server_version = metadata.version(SERVER_NAME)

    def model_name(self, model: LoadedModel) -> str:
        return protocol_model_name(self._configured_name, model)

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": self.server_version, "extensions": list(EXTENSIONS)}

    def served(self, name: str, version: str | None, routing_key: str | None) -> Served:
        """The variant that answers a request for `name` (and `version`, when given)."""
        served = self._router.choose(routing_key) if version is None else self._by_version(version)
        expected = self.model_name(served.model)
        if name != expected:
            raise NotFound(f"no model of that name is served here; this server serves {expected}")
        return served

    def _by_version(self, version: str) -> Served:
        variants = self._router.variants()
        for served in variants:
            if served.model.source.version == version:
                return served
        versions = ", ".join(v.model.source.version or "(local)" for v in variants)
        raise NotFound(f"no such version of this model is served here; versions served: {versions}")

    def model_metadata(self, served: Served) -> dict[str, Any]:
        model = served.model
        layouts = layouts_of(model)
        return {
            "name": self.model_name(model),
            "versions": [v.model.source.version for v in self._router.variants() if v.model.source.version],
            "platform": PLATFORM,
            "inputs": [
                {"name": name, "datatype": FEATURE_DATATYPE, "shape": [-1, 1]}
                for name in layouts.inputs.feature_names
            ],
            "outputs": [
                {"name": name, "datatype": datatype, "shape": [-1, 1]}
                for name, datatype in layouts.outputs.metadata()
            ],
        }

    async def infer(self, served: Served, request: TensorRequest) -> InferAnswer:
        """Check the request against the model's layouts, score its rows, and lay out the answer."""
        model = served.model
        layouts = layouts_of(model)
        requested = layouts.outputs.check_requested(request.outputs)
        features = layouts.inputs.rows(request.inputs, self._max_rows)
        assert model.runtime is not None  # layouts_of took the model
        prediction = await self._inference.score(model.runtime, features, served.labels)
        refuse_unscorable(prediction, single=False)
        outputs = layouts.outputs.tensors(prediction, requested)
        return InferAnswer(served, self.model_name(model), features, prediction, outputs)
