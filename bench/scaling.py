"""`python -m bench.scaling`: throughput against WORKERS, for a machine with cores to spare.

Serves the default logistic-regression model from a local file (MODEL_PATH mode: no tracking
server needed, so the run measures the API alone), starts `python -m server` with each worker
count in turn, and drives single-row /predict with wrk (threads and connections fixed across
runs, so only the server changes). Prints requests/s, p50, p99 and the speed-up over one worker.

    python -m bench.scaling --workers 1 2 4 8 --threads 8 --connections 256 --seconds 15
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import joblib

from bench.load import require_wrk, run_wrk
from model_wrapper import FEATURE_NAMES
from registry_scripts.dataset import load_frame
from registry_scripts.estimators import build_estimator
from registry_scripts.processes import api_process


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--threads", type=int, default=8, help="wrk threads")
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=None, help="write the results here as JSON")
    args = parser.parse_args()
    require_wrk()
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
    for workers in args.workers:
        settings = {
            "MODEL_URI": "",
            "MODEL_PATH": str(model_path),
            "WORKERS": str(workers),
            "MODEL_POLL_SECONDS": "0",
        }
        with api_process(env, work / f"api-{workers}.log", **settings) as api:
            run_wrk(f"{api.url}/predict", body, seconds=3, connections=args.connections,
                    content_type="application/json", threads=args.threads)  # warm-up  # fmt: skip
            result = run_wrk(f"{api.url}/predict", body, seconds=args.seconds, connections=args.connections,
                             content_type="application/json", threads=args.threads)  # fmt: skip
        rows.append({"workers": workers, "rps": round(result.rps), "p50_ms": result.p50_ms,
                     "p99_ms": result.p99_ms, "errors": result.errors})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["rps"]
    print("\n| workers | req/s | speed-up | p50 ms | p99 ms | errors |")
    print("|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['workers']} | {row['rps']:,} | {row['rps'] / base:.2f}x | {row['p50_ms']:.2f} | "
              f"{row['p99_ms']:.2f} | {row['errors']} |")  # fmt: skip
    if args.out is not None:
        args.out.write_text(json.dumps({"cores": os.cpu_count(), "runs": rows}, indent=2))
    return 0 if all(row["errors"] == 0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
