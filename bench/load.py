"""Driving a server with wrk and reading back one result per run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("wrk_post.lua")


@dataclass(frozen=True)
class LoadResult:
    """One wrk run: throughput, latency percentiles and every kind of error."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (Debian's package)")
    return path


def run_wrk(
    url: str,
    body: Path,
    *,
    seconds: float,
    connections: int,
    content_type: str,
    threads: int = 1,
    cpus: str | None = None,
) -> LoadResult:
    """`wrk -tT -cN -dS` POSTing `body` to `url`, on the cores `cpus` (taskset's list) if given."""
    env = {**os.environ, "BENCH_BODY": str(body), "BENCH_CONTENT_TYPE": content_type}
    duration = f"-d{max(1, round(seconds))}s"  # wrk takes whole seconds
    pinning = ["taskset", "-c", cpus] if cpus else []
    command = [
        *pinning,
        require_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        duration,
        "--timeout",
        "10s",
        "-s",
        str(SCRIPT),
        url,
    ]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("BENCH_RESULT "))
    raw = json.loads(line.removeprefix("BENCH_RESULT "))
    errors = sum(
        raw[k] for k in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts")
    )
    return LoadResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        errors=errors,
    )
