"""`python -m bench.scaling`: throughput against WORKERS, for a machine with cores to spare.

Serves the default logistic-regression model from a local file (MODEL_PATH mode: no tracking
server needed, so the run measures the API alone), starts `python -m server` with each worker
count in turn, and drives single-row /predict with wrk (threads and connections fixed across
runs, so only the server changes). Prints requests/s, p50, p99 and the speed-up over one worker,
for each way the workers listen (`--sockets`: a socket each with SO_REUSEPORT, or one shared).

`--connections-per-worker` keeps each worker's load the same as workers are added: with a fixed
total, one worker holds every connection, and micro-batching makes a worker with more requests in
flight more efficient per request, which flatters one worker against many.

`--pin` gives N workers one hardware thread on each of N physical cores and wrk every thread of
the other half of the cores (`bench.cpu_topology`), so the server and the load generator never
share a core and N workers have exactly N cores: the curve is then the server's own, not the test
rig's. The CPU topology is printed and written with the results.

    python -m bench.scaling --workers 1 2 4 8 --threads 8 --connections 256 --seconds 15 --pin
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import joblib

from bench.cpu_topology import describe, physical_cores, pinning
from bench.load import require_wrk, run_wrk
from model_wrapper import FEATURE_NAMES
from registry_scripts.dataset import load_frame
from registry_scripts.estimators import build_estimator
from registry_scripts.processes import ServerProcess, api_process

SOCKET_MODES = {"reuse-port": "true", "shared": "false"}


def _loaded_workers(url: str) -> int:
    """Workers that report a loaded model (each sets `model_info` once its model is in)."""
    text = httpx.get(f"{url}/metrics").text
    return len(
        {line.split('pid="')[1].split('"')[0] for line in text.splitlines() if line.startswith("model_info{")}
    )


def _wait_for_workers(server: ServerProcess, workers: int, timeout: float = 120) -> None:
    """Ready means one worker answers; the load must find all of them listening."""
    if workers == 1:
        return
    deadline = time.monotonic() + timeout
    while _loaded_workers(server.url) < workers:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {_loaded_workers(server.url)} of {workers} workers loaded")
        time.sleep(0.5)
    time.sleep(1)  # the last worker listens just after it reports the model loaded


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--sockets", nargs="+", choices=sorted(SOCKET_MODES), default=["reuse-port"])
    parser.add_argument("--threads", type=int, default=8, help="wrk threads")
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument(
        "--connections-per-worker",
        type=int,
        default=None,
        help="instead of --connections: this many per worker, so each worker sees the same load",
    )
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--pin", action="store_true", help="separate cores for the workers and for wrk")
    parser.add_argument("--out", type=Path, default=None, help="write the results here as JSON")
    args = parser.parse_args()
    require_wrk()
    cores = physical_cores()
    topology = describe(cores)
    print(f"CPUs: {json.dumps(topology)}", flush=True)
    if args.pin:
        try:
            pinning(max(args.workers), cores)
        except ValueError as error:
            raise SystemExit(f"--pin: {error}") from None
    work = Path(tempfile.mkdtemp(prefix="registry-serve-scaling-"))
    features, target, _ = load_frame()
    model_path = work / "model.joblib"
    joblib.dump(
        build_estimator("logistic_regression", 42).fit(features.to_numpy(), target.to_numpy()), model_path
    )
    body = work / "record.json"
    body.write_text(json.dumps(dict(zip(FEATURE_NAMES, features.iloc[0].tolist(), strict=True))))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    rows = []
    for mode in args.sockets:
        for workers in args.workers:
            if workers == 1 and mode != args.sockets[0]:
                continue  # one worker listens the same way in either mode
            settings = {"MODEL_URI": "", "MODEL_PATH": str(model_path), "WORKERS": str(workers),
                        "MODEL_POLL_SECONDS": "0", "REUSE_PORT": SOCKET_MODES[mode]}  # fmt: skip
            api = api_process(env, work / f"api-{mode}-{workers}.log", **settings)
            wrk_cpus = None
            if args.pin:
                server_cpus, wrk_cpus = pinning(workers, cores)
                api.command = ["taskset", "-c", server_cpus, *api.command]
            with api:
                _wait_for_workers(api, workers)
                connections = (args.connections_per_worker or 0) * workers or args.connections
                load = {"seconds": args.seconds, "connections": connections, "threads": args.threads,
                        "content_type": "application/json", "cpus": wrk_cpus}  # fmt: skip
                run_wrk(f"{api.url}/predict", body, **{**load, "seconds": 3})  # warm-up
                result = run_wrk(f"{api.url}/predict", body, **load)
            rows.append({"sockets": mode, "workers": workers, "connections": connections,
                         "rps": round(result.rps), "p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
                         "errors": result.errors})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    base = next(row["rps"] for row in rows if row["workers"] == min(args.workers))
    print(f"\nspeed-up: over {min(args.workers)} worker(s); of linear: speed-up / (workers / that count)")
    print("\n| sockets | workers | connections | req/s | speed-up | of linear | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        speedup = row["rps"] / base
        print(f"| {row['sockets']} | {row['workers']} | {row['connections']} | {row['rps']:,} | "
              f"{speedup:.2f}x | "
              f"{speedup / row['workers'] * min(args.workers):.0%} | {row['p50_ms']:.2f} | "
              f"{row['p99_ms']:.2f} | {row['errors']} |")  # fmt: skip
    if args.out is not None:
        args.out.write_text(json.dumps({**topology, "pinned": args.pin, "runs": rows}, indent=2))
    return 0 if all(row["errors"] == 0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
