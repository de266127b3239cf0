"""The committed gRPC descriptor is what `make proto` writes from the committed .proto, and it
describes the protocol's service as clients call it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from google.protobuf import descriptor_pb2

from server.grpc import descriptor, messages

ROOT = Path(__file__).resolve().parents[2]


def _writer():
    spec = importlib.util.spec_from_file_location(
        "write_grpc_descriptor", ROOT / "tools" / "write_grpc_descriptor.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_descriptor_is_what_the_proto_compiles_to() -> None:
    namespace: dict[str, object] = {}
    exec(_writer().render(), namespace)
    assert namespace["SERIALIZED_FILE"] == descriptor.SERIALIZED_FILE


def test_the_service_is_the_protocols() -> None:
    file = descriptor_pb2.FileDescriptorProto.FromString(descriptor.SERIALIZED_FILE)
    assert file.package == "inference"
    (service,) = file.service
    assert service.name == "GRPCInferenceService"
    assert [m.name for m in service.method] == [
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    ]
    request = messages.ModelInferRequest.DESCRIPTOR
    assert {f.name: f.number for f in request.fields} == {
        "model_name": 1,
        "model_version": 2,
        "id": 3,
        "parameters": 4,
        "inputs": 5,
        "outputs": 6,
        "raw_input_contents": 7,
    }


def test_the_messages_live_outside_protobufs_default_pool() -> None:
    """tritonclient registers its own `inference.*` messages there; both load in one process."""
    import tritonclient.grpc.service_pb2 as triton

    assert triton.ModelInferRequest.DESCRIPTOR.full_name == messages.ModelInferRequest.DESCRIPTOR.full_name
    assert triton.ModelInferRequest is not messages.ModelInferRequest
