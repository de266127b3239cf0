"""Driving a gRPC server with h2load (Debian's nghttp2-client): the same load for every server.

wrk speaks HTTP/1.1 only, and a Python client would measure itself. gRPC is HTTP/2: h2load
POSTs one framed, serialized `ModelInferRequest` again and again over `connections` HTTP/2
connections, one call in flight on each (as wrk keeps one request per connection), and logs
each call's latency, from which the percentiles come. h2load sees HTTP statuses, not gRPC's
(a failed call is an HTTP 200 with `grpc-status` in its trailers), so each body is first sent
through a real gRPC client, which must get an answer, and the caller checks the servers' own
error counts after the load.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import grpc

from bench.load import LoadResult

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"


def require_h2load() -> str:
    path = shutil.which("h2load")
    if path is None:
        raise SystemExit("h2load is not installed: apt-get install nghttp2-client (Debian's package)")
    return path


def framed(message: bytes) -> bytes:
    """A gRPC length-prefixed message: not compressed, 4-byte big-endian length, the bytes."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def check_answers(port: int, message: bytes) -> bytes:
    """Send `message` once through grpcio; the serialized answer, or raises `grpc.RpcError`."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(INFER_METHOD, request_serializer=None, response_deserializer=None)
        return call(message, timeout=30)


def run_h2load(
    port: int, message: bytes, *, seconds: float, connections: int, warm_up: float = 1.0
) -> LoadResult:
    """h2load for `seconds` (after `warm_up`) against ModelInfer on `port`."""
    with tempfile.TemporaryDirectory() as folder:
        body = Path(folder) / "request.bin"
        body.write_bytes(framed(message))
        log = Path(folder) / "calls.tsv"
        command = [
            require_h2load(),
            "-t1",
            f"-c{connections}",
            "-m1",
            f"-D{max(1, round(seconds))}",
            f"--warm-up-time={max(1, round(warm_up))}",
            "-d",
            str(body),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            f"--log-file={log}",
            f"http://127.0.0.1:{port}{INFER_METHOD}",
        ]
        output = subprocess.run(
            command, capture_output=True, text=True, check=True, timeout=seconds + 60
        ).stdout
        calls = [line.split("\t") for line in log.read_text().splitlines() if line]
    # Columns: start (µs since the epoch), HTTP status, µs until the end of the response.
    latencies = sorted(int(call[2]) for call in calls)
    errors = sum(1 for call in calls if call[1] != "200")
    started = [int(call[0]) for call in calls]
    span = (max(started) - min(started)) / 1e6 if len(started) > 1 else seconds
    del output
    return LoadResult(
        requests=len(calls),
        seconds=max(span, 1e-9),
        p50_ms=statistics.median(latencies) / 1000 if latencies else 0.0,
        p99_ms=latencies[int(0.99 * (len(latencies) - 1))] / 1000 if latencies else 0.0,
        errors=errors,
    )
