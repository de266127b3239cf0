"""How routes reach the app's `Services`: directly on hot routes, through `Depends` elsewhere."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from server.services import Services


def services_of(request: Request) -> Services:
    """The services of the app serving `request` (hot routes call this instead of `Depends`)."""
    services: Services = request.app.state.services
    return services


async def get_services(request: Request) -> Services:
    """Async on purpose: FastAPI runs a plain `def` dependency in a worker thread, per request."""
    return services_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]
