"""Small helpers the tests share: running a registry script as a real subprocess."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable


def run_module(
    module: str, *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `python -m module args…` with exactly `env`, capturing text output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_ok(module: str, *args: str, env: dict[str, str]) -> str:
    """Run a script that must succeed and return its stdout, stripped."""
    result = run_module(module, *args, env=env)
    assert result.returncode == 0, f"{module} {args} failed:\n{result.stderr[-3000:]}"
    return result.stdout.strip()


def wait_for(
    condition: Callable[[], bool], timeout: float = 30, what: str = "condition", poll: float = 0.05
) -> float:
    """Poll `condition` until it holds; the seconds it took. Fails the test after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(poll)
    raise AssertionError(f"{what} not reached within {timeout} s")


def half_sent(port: int, body: bytes, path: str = "/predict") -> socket.socket:
    """A JSON POST whose headers and first half of the body are sent and the rest held back: a
    request the server counts as in flight for as long as the test likes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body[: len(body) // 2])
    return sock
