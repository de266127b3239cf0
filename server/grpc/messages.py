"""The protocol's message classes, from `descriptor.SERIALIZED_FILE`, in a descriptor pool of
their own (see `tools/write_grpc_descriptor.py` for why not protobuf's default pool)."""

from __future__ import annotations

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import FileDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from server.edge.route_policy import GRPC_SERVICE
from server.grpc.descriptor import SERIALIZED_FILE

POOL = descriptor_pool.DescriptorPool()
FILE: FileDescriptor = POOL.AddSerializedFile(SERIALIZED_FILE)
SERVICE: ServiceDescriptor = POOL.FindServiceByName(GRPC_SERVICE)


def _message(name: str) -> type[Message]:
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"inference.{name}"))


ServerLiveRequest = _message("ServerLiveRequest")
ServerLiveResponse = _message("ServerLiveResponse")
ServerReadyRequest = _message("ServerReadyRequest")
ServerReadyResponse = _message("ServerReadyResponse")
ModelReadyRequest = _message("ModelReadyRequest")
ModelReadyResponse = _message("ModelReadyResponse")
ServerMetadataRequest = _message("ServerMetadataRequest")
ServerMetadataResponse = _message("ServerMetadataResponse")
ModelMetadataRequest = _message("ModelMetadataRequest")
ModelMetadataResponse = _message("ModelMetadataResponse")
ModelInferRequest = _message("ModelInferRequest")
ModelInferResponse = _message("ModelInferResponse")
InferTensorContents = _message("InferTensorContents")

# Each method's request and response classes, by method name.
METHODS: dict[str, tuple[type[Message], type[Message]]] = {
    method.name: (
        message_factory.GetMessageClass(method.input_type),
        message_factory.GetMessageClass(method.output_type),
    )
    for method in SERVICE.methods
}
