"""The gRPC server beside HTTP, in the worker's own event loop: the Open Inference Protocol's
service, gRPC health checking (`grpc.health.v1.Health`: SERVING once the model is loaded,
NOT_SERVING from the start of shutdown) and reflection (for grpcurl and friends).

Every worker binds GRPC_PORT with SO_REUSEPORT, so the kernel spreads connections over the
workers as it spreads HTTP's. Messages are bounded by MAX_BODY_BYTES, as HTTP bodies are.
"""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from server.edge.route_policy import GRPC_SERVICE
from server.grpc import messages
from server.grpc.service import generic_handler
from server.services import Services

logger = logging.getLogger("server.grpc")


def _describe_every_service() -> None:
    """Health's and reflection's own descriptions join the protocol's in the server's pool, so
    that reflection describes every service it lists."""
    for described in (health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
        try:
            messages.POOL.FindFileByName(described.name)
        except KeyError:
            messages.POOL.AddSerializedFile(described.serialized_pb)


class GrpcServer:
    """A started gRPC server and its health service."""

    def __init__(self, server: grpc.aio.Server, health_service: health.aio.HealthServicer, port: int) -> None:
        self._server = server
        self._health = health_service
        self.port = port

    async def serving(self) -> None:
        for name in ("", GRPC_SERVICE):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float) -> None:
        """Refuse new calls, give those in progress `grace` seconds, then end."""
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)


async def start_grpc(services: Services, host: str, port: int) -> GrpcServer:
    """Bind and start; raises when the port cannot be bound (the worker then does not start)."""
    _describe_every_service()
    limit = services.settings.max_body_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", -1),
        ]
    )
    server.add_generic_rpc_handlers((generic_handler(services),))
    health_service = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_service, server)
    reflection.enable_server_reflection(
        (GRPC_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server, pool=messages.POOL
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_insecure_port(address)
    if bound == 0:
        raise RuntimeError(f"gRPC could not bind {address}")
    await server.start()
    logger.info("gRPC serving the Open Inference Protocol on %s", address)
    return GrpcServer(server, health_service, bound)
