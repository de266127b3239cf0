"""`make bench-soak`: five minutes at 32 connections with a promotion every 30 seconds.

Reports, per minute, requests/s, p50, p99 and errors (one wrk run a minute, back to back), the
server's resident memory every 10 s, and its growth after the first (warm-up) minute.

    make bench-soak                  # or: python -m bench.soak [--minutes 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from mlflow import MlflowClient

from bench.load import LoadResult, require_wrk, run_wrk
from model_wrapper import FEATURE_NAMES
from registry_scripts.dataset import load_frame
from registry_scripts.processes import api_process
from registry_scripts.tracking_server import TrackingServer

MODEL = "soak-benchmark"


def _promote_every(
    client: MlflowClient, seconds: float, stop: threading.Event, log: list[tuple[float, str]]
) -> None:
    version = "1"
    while not stop.wait(seconds):
        version = "2" if version == "1" else "1"
        client.set_registered_model_alias(MODEL, "champion", version)
        log.append((time.monotonic(), version))


def _sample_rss(pid: int, stop: threading.Event, samples: list[tuple[float, float]], started: float) -> None:
    process = psutil.Process(pid)
    while not stop.wait(10):
        samples.append((time.monotonic() - started, process.memory_info().rss / 2**20))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--minutes", type=int, default=int(os.environ.get("BENCH_SOAK_MINUTES", 5)))
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    require_wrk()
    work = Path(tempfile.mkdtemp(prefix="registry-serve-soak-"))
    row = {k: float(v) for k, v in load_frame()[0].iloc[0].items()}
    body = work / "record.json"
    body.write_text(json.dumps(dict(zip(FEATURE_NAMES, row.values(), strict=True))))
    with TrackingServer(work / "mlflow") as tracking:
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": tracking.url,
            "PYTHONWARNINGS": "ignore",
            "MODEL_NAME": MODEL,
        }
        for seed in ("1", "2"):
            subprocess.run([sys.executable, "-m", "registry_scripts.train", "--seed", seed],
                           env=env, capture_output=True, check=True)  # fmt: skip
        client = MlflowClient(tracking.url)
        client.set_registered_model_alias(MODEL, "champion", "1")
        settings = {"MODEL_URI": f"models:/{MODEL}@champion", "MODEL_POLL_SECONDS": "1"}
        with api_process(env, work / "api.log", **settings) as api:
            assert api.process is not None
            stop = threading.Event()
            promotions: list[tuple[float, str]] = []
            rss: list[tuple[float, float]] = []
            started = time.monotonic()
            threads = [
                threading.Thread(target=_promote_every, args=(client, 30.0, stop, promotions)),
                threading.Thread(target=_sample_rss, args=(api.process.pid, stop, rss, started)),
            ]
            for thread in threads:
                thread.start()
            minutes: list[LoadResult] = []
            try:
                for minute in range(args.minutes):
                    result = run_wrk(f"{api.url}/predict", body, seconds=60, connections=args.connections,
                                     content_type="application/json")  # fmt: skip
                    minutes.append(result)
                    print(f"minute {minute + 1}: {result.rps:,.0f} req/s  p50 {result.p50_ms:.2f} ms  "
                          f"p99 {result.p99_ms:.2f} ms  errors {result.errors}", flush=True)  # fmt: skip
            finally:
                stop.set()
                for thread in threads:
                    thread.join()
            swaps = [line for line in api.log().splitlines() if "now serving" in line]
    after_warmup = [mib for at, mib in rss if at >= 60]
    growth = (after_warmup[-1] - after_warmup[0]) / after_warmup[0] if len(after_warmup) >= 2 else 0.0
    report = {
        "minutes": [
            {"minute": i + 1, "rps": round(m.rps), "p50_ms": m.p50_ms, "p99_ms": m.p99_ms, "errors": m.errors}
            for i, m in enumerate(minutes)
        ],
        "promotions": len(promotions),
        "swaps_logged": len(swaps),
        "rss_mib": [(round(at), round(mib, 1)) for at, mib in rss],
        "rss_growth_after_warmup": round(growth, 4),
        "errors": sum(m.errors for m in minutes),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "rss_mib"}, indent=2))
    print("rss MiB (seconds, MiB):", report["rss_mib"])
    return 0 if report["errors"] == 0 and growth < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
