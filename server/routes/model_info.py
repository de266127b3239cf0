"""/model/metadata and /model/features: what is served, from the registry and the signature."""

from __future__ import annotations

import json

from fastapi import APIRouter

from server.live.loaded_model import LoadedModel
from server.routes.dependencies import ServicesDep
from server.routes.health import registry_body, reload_error_body
from server.routes.openapi import READ_ERRORS
from server.routes.schemas import ClassBody, FeatureBody, FeaturesResponse, ModelMetadata

router = APIRouter(prefix="/model", tags=["model"])


def _signature(model: LoadedModel) -> dict[str, object] | None:
    raw = model.signature()
    if raw is None:
        return None
    return {key: json.loads(value) if isinstance(value, str) else value for key, value in raw.items()}


def _classes(model: LoadedModel) -> list[ClassBody] | None:
    runtime = model.runtime
    if runtime is None:
        return None
    return [
        ClassBody(value=v, name=n) for v, n in zip(runtime.classes.tolist(), runtime.class_names, strict=True)
    ]


@router.get("/metadata", response_model=ModelMetadata, responses=READ_ERRORS)
async def metadata(services: ServicesDep) -> ModelMetadata:
    model = services.store.current
    source = model.source
    return ModelMetadata(
        name=source.name,
        version=source.version,
        alias=source.alias,
        run_id=source.run_id,
        model_uri=source.uri,
        source_uri=source.download_uri,
        loaded_at=model.loaded_at,
        metrics=source.metrics,
        classes=_classes(model),
        feature_count=len(model.features) if model.features is not None else None,
        signature=_signature(model),
        runtime=model.runtime_name,
        fast_path=model.runtime is not None,
        registry=registry_body(services),
        last_reload_error=reload_error_body(services.reloader.last_error),
    )


@router.get("/features", response_model=FeaturesResponse, responses=READ_ERRORS)
async def features(services: ServicesDep) -> FeaturesResponse:
    model = services.store.current
    specs = model.features or ()
    return FeaturesResponse(
        count=len(specs), features=[FeatureBody(name=f.name, type=f.type, required=f.required) for f in specs]
    )
