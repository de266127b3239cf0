"""`make bench-swap`: the alias moved every second for a minute, under load.

Two versions alternate on `@champion` once a second for BENCH_SWAP_SECONDS (60) while wrk keeps
16 connections busy on /predict; a probe measures, for each move, the time from the promotion to
the first answer by the new version. Run twice: told by MLflow's webhook (no polling), and by
polling alone (MODEL_POLL_SECONDS=1). Prints failed requests, p50/p99 during the swaps, and the
promotion-to-answer times.

    make bench-swap                  # or: python -m bench.swap [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from mlflow import MlflowClient

from bench.load import LoadResult, require_wrk, run_wrk
from model_wrapper import FEATURE_NAMES
from registry_scripts.dataset import load_frame
from registry_scripts.processes import api_process
from registry_scripts.tracking_server import TrackingServer

MODEL = "swap-benchmark"
SECRET = "swap-benchmark-secret"
WEBHOOK_ENV = {
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_WEBHOOK_CACHE_TTL": "1",
}


def _register_two(env: dict[str, str]) -> None:
    for seed in ("1", "2"):
        subprocess.run(
            [sys.executable, "-m", "registry_scripts.train", "--seed", seed],
            env={**env, "MODEL_NAME": MODEL}, capture_output=True, check=True,
        )  # fmt: skip


def _promote_and_probe(
    client: MlflowClient, api_url: str, row: dict[str, float], seconds: float, delays: list[float]
) -> None:
    """Move the alias every second; after each move, time the first answer by the new version."""
    version = "1"
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=api_url, timeout=10) as probe:
        while time.monotonic() < deadline:
            tick = time.monotonic()
            version = "2" if version == "1" else "1"
            client.set_registered_model_alias(MODEL, "champion", version)
            promoted = time.monotonic()
            while time.monotonic() - promoted < 10:
                if probe.post("/predict", json=row).headers.get("x-model-version") == version:
                    delays.append(time.monotonic() - promoted)
                    break
                time.sleep(0.005)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))


def run_mode(
    name: str, tracking: TrackingServer, work: Path, seconds: int, **settings: str
) -> dict[str, object]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking.url, "PYTHONWARNINGS": "ignore"}
    client = MlflowClient(tracking.url)
    client.set_registered_model_alias(MODEL, "champion", "1")
    row = {k: float(v) for k, v in load_frame()[0].iloc[0].items()}
    body = work / "record.json"
    body.write_text(json.dumps(dict(zip(FEATURE_NAMES, row.values(), strict=True))))
    hook = None
    with api_process(env, work / f"api-{name}.log", MODEL_URI=f"models:/{MODEL}@champion", **settings) as api:
        if "MLFLOW_WEBHOOK_SECRET" in settings:
            hook = client.create_webhook(
                name=f"bench-{name}", url=f"{api.url}/webhooks/mlflow",
                events=["model_version_alias.created"], secret=SECRET,
            )  # fmt: skip
            time.sleep(2)  # MLflow's webhook cache
        delays: list[float] = []
        mover = threading.Thread(target=_promote_and_probe, args=(client, api.url, row, seconds, delays))
        mover.start()
        result: LoadResult = run_wrk(f"{api.url}/predict", body, seconds=seconds + 1, connections=16,
                                     content_type="application/json")  # fmt: skip
        mover.join()
        reloads = httpx.get(f"{api.url}/metrics").text
    if hook is not None:
        client.delete_webhook(hook.webhook_id)
    prefix = 'model_reloads_total{outcome="swapped"}'
    swapped = next((float(line.split()[-1]) for line in reloads.splitlines() if line.startswith(prefix)), 0.0)
    return {
        "mode": name,
        "requests": result.requests,
        "errors": result.errors,
        "rps": round(result.rps),
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "swaps": int(swapped),
        "promotions": len(delays),
        "to_first_answer_median_s": round(statistics.median(delays), 3) if delays else None,
        "to_first_answer_p95_s": round(sorted(delays)[int(0.95 * (len(delays) - 1))], 3) if delays else None,
        "to_first_answer_max_s": round(max(delays), 3) if delays else None,
    }


def render(rows: list[dict[str, object]]) -> str:
    lines = [
        "| mode | requests | failed | req/s | p50 ms | p99 ms | swaps | promotion to first answer, s "
        "(median / p95 / max) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        delays = " / ".join(
            str(r[k]) for k in ("to_first_answer_median_s", "to_first_answer_p95_s", "to_first_answer_max_s")
        )
        lines.append(
            f"| {r['mode']} | {r['requests']:,} | {r['errors']} | {r['rps']:,} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['swaps']} | {delays} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.swap", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SWAP_SECONDS", 60)))
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    require_wrk()
    work = Path(tempfile.mkdtemp(prefix="registry-serve-swap-"))
    with TrackingServer(work / "mlflow", env=WEBHOOK_ENV) as tracking:
        _register_two({**os.environ, "MLFLOW_TRACKING_URI": tracking.url})
        rows = [
            run_mode(
                "webhook", tracking, work, args.seconds, MODEL_POLL_SECONDS="0", MLFLOW_WEBHOOK_SECRET=SECRET
            ),
            run_mode("polling every 1 s", tracking, work, args.seconds, MODEL_POLL_SECONDS="1"),
        ]
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"swap-{stamp}.json").write_text(json.dumps(rows, indent=2))
    print(render(rows))
    return 0 if all(r["errors"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
