"""The gRPC guard's own rules, on its parts: peer addresses without ports (the per-address limits
depend on it), and a cancelled call counted as cancelled, not as answered. The rest of what the
guard does is tested over real connections (tests/e2e/test_open_inference_clients.py,
tests/e2e/test_security.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI

from server.grpc import messages
from server.grpc.guard import CallGuard, peer_address
from tests.server.metrics_text import counted


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:127.0.0.1:5000", "127.0.0.1"),
        ("ipv6:%5B::1%5D:58118", "::1"),
        ("ipv6:[2001:db8::7]:443", "2001:db8::7"),
        ("ipv6:%5B::ffff:10.0.0.3%5D:80", "::ffff:10.0.0.3"),
        ("unix:/tmp/socket", "/tmp/socket"),
        ("", "unknown"),
    ],
)
def test_a_peer_is_its_address_without_the_port(peer: str, address: str) -> None:
    assert peer_address(peer) == address


class _Context:
    """What the guard reads of a grpc.aio ServicerContext."""

    def invocation_metadata(self) -> tuple:
        return ()

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def set_trailing_metadata(self, metadata: Any) -> None:
        raise AssertionError("a cancelled call sends nothing")


def test_a_cancelled_call_is_counted_as_cancelled(app: FastAPI) -> None:
    method = "/inference.GRPCInferenceService/ModelInfer"

    async def cancelled(request: Any, call: Any) -> Any:
        raise asyncio.CancelledError

    guarded = CallGuard(app.state.services).wrap(method, cancelled, messages.ModelInferRequest)
    text_before = app.state.services.exposition.render().decode()
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(guarded(messages.ModelInferRequest().SerializeToString(), _Context()))
    text_after = app.state.services.exposition.render().decode()
    labels = {"endpoint": method, "protocol": "grpc", "reason": "CANCELLED"}
    assert (
        counted(text_after, "prediction_requests_failed_total", **labels)
        - counted(text_before, "prediction_requests_failed_total", **labels)
        == 1
    )
