"""Small helpers the tests share: running a registry script as a real subprocess."""

from __future__ import annotations

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
