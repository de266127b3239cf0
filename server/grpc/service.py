"""The `inference.GRPCInferenceService` endpoints: thin, over the same data plane as `/v2`."""

from __future__ import annotations

from typing import Any

import grpc
from starlette.concurrency import run_in_threadpool

from server.edge.route_policy import GRPC_SERVICE
from server.grpc import codec, messages
from server.grpc.guard import Call, CallGuard, Handler
from server.inference.variants import ROUTING_KEY_HEADER, Served
from server.live.readiness import answers_example
from server.routes.answers import CallFacts, answered_call
from server.services import Services


class InferenceService:
    """One method per RPC, named as the protocol names them; each takes the decoded message and
    the guard's `Call`."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._plane = services.open_inference

    async def ServerLive(self, request: Any, call: Call) -> Any:
        return messages.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, call: Call) -> Any:
        return messages.ServerReadyResponse(ready=await self._answers())

    async def ModelReady(self, request: Any, call: Call) -> Any:
        self._served(request.name, request.version, call)
        return messages.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request: Any, call: Call) -> Any:
        return messages.ServerMetadataResponse(**self._plane.server_metadata())

    async def ModelMetadata(self, request: Any, call: Call) -> Any:
        body = self._plane.model_metadata(self._served(request.name, request.version, call))
        response = messages.ModelMetadataResponse(
            name=body["name"], versions=body["versions"], platform=body["platform"]
        )
        for name, group in (("inputs", body["inputs"]), ("outputs", body["outputs"])):
            for tensor in group:
                getattr(response, name).add(
                    name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"]
                )
        return response

    async def ModelInfer(self, request: Any, call: Call) -> Any:
        served = self._served(request.model_name, request.model_version, call)
        tensors, raw = codec.decode_request(request)
        answer = await self._plane.infer(served, tensors)
        answered_call(
            self._services,
            served,
            answer.features,
            answer.prediction,
            CallFacts(call.method, call.started, call.caller),
        )
        return codec.encode_response(
            answer.model_name, served.model.source.version, tensors.id, answer.outputs, raw
        )

    def _served(self, name: str, version: str, call: Call) -> Served:
        key = call.metadata.get(ROUTING_KEY_HEADER) or call.caller
        served = self._plane.served(name, version or None, key)
        call.variant = served.labels
        call.trailing = tuple((header.lower(), value) for header, value in served.headers.items())
        return served

    async def _answers(self) -> bool:
        model = self._services.store.peek()
        if model is None:
            return False
        try:
            await run_in_threadpool(answers_example, model)
        except Exception:  # noqa: BLE001 - any failure means "not ready"; /ping logs the reason
            return False
        return True


def generic_handler(services: Services) -> grpc.GenericRpcHandler:
    """The service's methods, each guarded, as one handler for `grpc.aio.Server`."""
    service = InferenceService(services)
    guard = CallGuard(services)
    handlers = {}
    for name, (request_class, response_class) in messages.METHODS.items():
        method: Handler = getattr(service, name)
        handlers[name] = grpc.unary_unary_rpc_method_handler(
            guard.wrap(f"/{GRPC_SERVICE}/{name}", method, request_class),  # it parses the bytes
            response_serializer=response_class.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(GRPC_SERVICE, handlers)
