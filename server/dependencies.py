"""The objects routes need, built once by `create_app` and handed to routes by FastAPI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from server.follower import AliasFollower
from server.inference import Inference
from server.loading import ModelLoader
from server.metrics import Exposition
from server.model_store import ModelStore
from server.reloader import Reloader
from server.settings import ServerSettings
from server.webhooks import DeliveryVerifier


@dataclass
class Services:
    """Everything a request may touch: settings, the served model, inference, metrics, reloads."""

    settings: ServerSettings
    store: ModelStore
    loader: ModelLoader
    inference: Inference
    exposition: Exposition
    reloader: Reloader
    follower: AliasFollower
    webhook_verifier: DeliveryVerifier | None
    started_at: float


def services_of(request: Request) -> Services:
    """The services of the app serving `request` (hot routes call this instead of `Depends`)."""
    services: Services = request.app.state.services
    return services


async def get_services(request: Request) -> Services:
    """Async on purpose: FastAPI runs a plain `def` dependency in a worker thread, per request."""
    return services_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]
