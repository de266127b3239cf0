"""`create_app(settings)`: wiring, lifespan, exception handlers; no business logic.

`uvicorn server.app:app` works too: the module builds its app from the environment on first
access of `app` (not at import), and `python -m server` uses `create_app_from_env`.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import metadata
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from server.edge.error_handlers import EXCEPTION_HANDLERS
from server.edge.fast_lane import ServingApp
from server.edge.middleware_stack import build_stack, wrap
from server.edge.route_policy import V1_PREDICT, V2_INFER, V2_VERSION_INFER
from server.live.loaded_model import LoadedModel
from server.live.loading import ModelLoader, load_with_retry
from server.live.model_store import ModelStore
from server.process.logging_setup import configure_logging
from server.process.mlflow_env import apply_mlflow_client_settings
from server.routes import (
    admin,
    health,
    invocations,
    kserve_v1,
    model_info,
    monitoring,
    open_inference,
    predictions,
    variants,
)
from server.routes import metrics as metrics_routes
from server.routes.openapi import OpenApiBuilder
from server.services import Services, build_services
from server.settings import ServerSettings

if TYPE_CHECKING:
    from server.grpc.server import GrpcServer

DESCRIPTION = (
    "Serves an MLflow pyfunc model from the model registry: strict JSON prediction endpoints, "
    "MLflow's `/invocations` protocol, the Open Inference Protocol (`/v2`) and KServe V1 (`/v1`), "
    "health checks and Prometheus metrics."
)


def freeze_startup_objects() -> None:
    """Move everything alive after start-up (MLflow, pandas, the model: hundreds of thousands of
    objects) out of the garbage collector's sight. A full collection over them is a pause that
    would otherwise land on some unlucky request as its p99."""
    gc.collect()
    gc.freeze()


def load_initial_model(settings: ServerSettings, loader: ModelLoader) -> LoadedModel:
    """The model to start with, warmed up: MODEL_URI (retried for MODEL_LOAD_TIMEOUT), else
    MODEL_PATH."""
    if settings.model_uri:
        return load_with_retry(
            lambda: _warmed(loader.load_uri(settings.model_uri)), settings.model_load_timeout
        )
    return _warmed(
        loader.load_local_estimator(settings.model_path, allow_pickle=settings.allow_pickled_models)
    )


def _warmed(model: LoadedModel) -> LoadedModel:
    model.warm_up()
    return model


def _background_tasks(services: Services) -> list[asyncio.Task[None]]:
    """What runs beside the requests: the alias followers, the variant policy, the shadow, the
    prediction log's writer and retention, drift."""
    loop = asyncio.get_running_loop()
    tasks = [
        loop.create_task(services.follower.run(), name="alias-follower"),
        loop.create_task(services.router.watch(), name="variant-policy"),
    ]
    challenger = services.challenger
    if challenger is not None:
        tasks.append(loop.create_task(challenger.follower.run(), name="challenger-follower"))
        tasks.append(loop.create_task(challenger.shadow.run(), name="shadow-scorer"))
    monitoring = services.monitoring
    if monitoring is not None:
        tasks.append(loop.create_task(monitoring.log.run(), name="prediction-log"))
        tasks.append(loop.create_task(monitoring.log.keep_retention(), name="prediction-log-retention"))
        tasks.append(loop.create_task(monitoring.drift.run(), name="drift"))
    return tasks


async def _start_grpc(settings: ServerSettings, services: Services) -> GrpcServer:
    """gRPC beside HTTP (imported only when GRPC_PORT is set: HTTP-only workers never load grpc)."""
    from server.grpc.server import start_grpc

    assert settings.grpc_port is not None
    try:
        server = await start_grpc(services, settings.api_host, settings.grpc_port)
    except BaseException:
        await services.close()
        raise
    await server.serving()
    return server


def create_app(settings: ServerSettings, *, store: ModelStore | None = None) -> FastAPI:
    """The application. Pass a `store` holding a model to skip loading at start-up (the caller
    then owns the store and closes it)."""
    apply_mlflow_client_settings(settings)
    owns_store = store is None
    store = store if store is not None else ModelStore()
    services = build_services(settings, store)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not store.loaded:
            store.swap(await run_in_threadpool(load_initial_model, settings, services.loader))
        if services.monitoring is not None:
            try:
                await services.monitoring.log.start()
            except BaseException:  # refused (a schema it may not migrate): nothing is left running
                await services.close()
                raise
        grpc_server = await _start_grpc(settings, services) if settings.grpc_port is not None else None
        freeze_startup_objects()
        services.reloader.announce(store.current)
        tasks = _background_tasks(services)
        try:
            yield
        finally:
            if grpc_server is not None:
                # Calls in progress may finish (each within REQUEST_TIMEOUT_SECONDS); new ones are refused.
                await grpc_server.stop(settings.request_timeout_seconds)
            for task in tasks:
                task.cancel()
            # Whatever a task ended with, the services are closed.
            await asyncio.gather(*tasks, return_exceptions=True)
            await services.close()
            if owns_store:
                store.close()

    docs = settings.docs_enabled
    app = ServingApp(
        title="registry-serve",
        version=metadata.version("registry-serve"),
        description=DESCRIPTION,
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.services = services
    for router in (
        admin.router,
        predictions.router,
        invocations.router,
        model_info.router,
        variants.router,
        monitoring.router,
        health.router,
        metrics_routes.router,
        open_inference.router,
        kserve_v1.router,
    ):
        app.include_router(router)
    stack = build_stack(
        settings,
        services.authenticator,
        services.limiter,
        services.in_flight,
        failed_credentials=services.failed_credentials,
    )
    for middleware in reversed(stack):  # add_middleware puts the last one added outermost
        app.add_middleware(middleware.cls, *middleware.args, **middleware.kwargs)
    app.install_fast_lane(
        lambda inner: wrap(stack, inner),
        {
            "/predict": predictions.predict,
            "/batch-predict": predictions.batch_predict,
            "/invocations": invocations.invocations,
            V2_INFER: open_inference.infer,
            V2_VERSION_INFER: open_inference.infer,
            V1_PREDICT: kserve_v1.predict,
        },
    )
    app.openapi = OpenApiBuilder(app, settings, store.peek)  # type: ignore[method-assign]
    return app


def create_app_from_env() -> FastAPI:
    """The app as a process entry point builds it: settings and logging from the environment."""
    settings = ServerSettings()
    configure_logging(settings.log_level, settings.log_format, access_log=settings.access_log)
    return create_app(settings)


def __getattr__(name: str) -> FastAPI:
    if name == "app":
        return create_app_from_env()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
