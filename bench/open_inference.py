"""`make bench`'s Open Inference Protocol section: this server against MLServer's MLflow runtime
(`make mlserver`) on the same model directory, one worker each, over REST (wrk) and gRPC
(h2load), single rows and 100 rows, in the layout both take: one FP64 input per feature.

Issue 16's targets: at least 30x MLServer's requests/s and at most 1/30 of its p99 in each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import mlflow

from bench.grpc_load import check_answers, run_h2load
from bench.load import LoadResult
from registry_scripts.dataset import load_frame
from registry_scripts.processes import api_process, free_port, mlserver_process
from server.grpc import messages

if TYPE_CHECKING:
    from bench.run import Bench, Report, Target

MODEL = "breast-cancer-classifier"
OURS = "registry-serve"
THEIRS = "MLServer"
SIZES = (1, 100)


def rest_scenario(rows: int) -> str:
    return f"v2 REST {rows} row{'s' if rows > 1 else ''}"


def grpc_scenario(rows: int) -> str:
    return f"v2 gRPC {rows} row{'s' if rows > 1 else ''}"


def _frame_rows(rows: int) -> list[list[float]]:
    frame = load_frame()[0]
    return [frame.iloc[i % len(frame)].tolist() for i in range(rows)]


def rest_body(rows: int) -> dict[str, object]:
    """One FP64 input per feature, shape [N, 1], its data flat (as tritonclient sends it)."""
    names = list(load_frame()[0].columns)
    data = _frame_rows(rows)
    return {
        "inputs": [
            {"name": name, "datatype": "FP64", "shape": [rows, 1], "data": [row[i] for row in data]}
            for i, name in enumerate(names)
        ]
    }


def grpc_message(rows: int) -> bytes:
    names = list(load_frame()[0].columns)
    data = _frame_rows(rows)
    request = messages.ModelInferRequest(model_name=MODEL)
    for i, name in enumerate(names):
        tensor = request.inputs.add(name=name, datatype="FP64", shape=[rows, 1])
        tensor.contents.fp64_contents.extend(row[i] for row in data)
    return request.SerializeToString()


def section(bench: Bench, env: dict[str, str], champion_uri: str, work: Path) -> None:
    from bench.run import Row

    print("the Open Inference Protocol: this server against MLServer's MLflow runtime, one worker each:")
    logs = work / "logs"
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    model_dir = Path(mlflow.artifacts.download_artifacts(champion_uri, dst_path=str(work / "oip-model")))
    for rows in SIZES:
        path = work / f"v2_{rows}.json"
        path.write_text(json.dumps(rest_body(rows)))
        bench.bodies[f"v2_{rows}"] = path
    grpc_port = free_port()
    theirs, their_grpc = mlserver_process(env, model_dir, MODEL, work / "mlserver", logs / "mlserver.log")
    ours = api_process(env, logs / "api-oip.log", MODEL_URI=champion_uri, GRPC_PORT=str(grpc_port))
    with theirs, ours:
        ports = {OURS: (ours, grpc_port), THEIRS: (theirs, their_grpc)}
        failures = FailedCalls(ours.url)
        for rows in SIZES:
            for name, (server, _) in ports.items():
                bench.load(
                    rest_scenario(rows), name, f"{server.url}/v2/models/{MODEL}/infer", f"v2_{rows}", rows
                )
        for rows in SIZES:
            message = grpc_message(rows)
            for name, (_, port) in ports.items():
                check_answers(port, message)
                run_h2load(port, message, seconds=min(2.0, bench.seconds), connections=bench.connections)
                result = run_h2load(port, message, seconds=bench.seconds, connections=bench.connections)
                if name == OURS:
                    result = failures.counted_into(result)
                bench.report.rows.append(Row(grpc_scenario(rows), name, rows, result))
                print(
                    f"  {grpc_scenario(rows):<28} {name:<22} {result.rps:>9.1f} req/s  "
                    f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  errors {result.errors}",
                    flush=True,
                )


class FailedCalls:
    """h2load cannot see a failed gRPC call (an HTTP 200 with a grpc-status trailer): for this
    server, its own count of failed ModelInfer calls since the last look is a run's errors."""

    def __init__(self, metrics_url: str) -> None:
        self._url = f"{metrics_url}/metrics"
        self._seen = self._count()

    def _count(self) -> float:
        text = httpx.get(self._url, timeout=10).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("prediction_requests_failed_total{")
            and 'endpoint="/inference.GRPCInferenceService/ModelInfer"' in line
        )

    def counted_into(self, result: LoadResult) -> LoadResult:
        count = self._count()
        new, self._seen = count - self._seen, count
        return LoadResult(
            result.requests, result.seconds, result.p50_ms, result.p99_ms, result.errors + int(new)
        )


def targets(report: Report, target: type[Target]) -> list[Target]:
    """At least 30x MLServer's requests/s and at most 1/30 of its p99, in each scenario."""
    rows = report.rows
    scenarios = [rest_scenario(n) for n in SIZES] + [grpc_scenario(n) for n in SIZES]
    if not any(row.scenario == scenarios[0] for row in rows):
        return []
    found = []
    for scenario in scenarios:
        ours = report.find(scenario, OURS)
        theirs = report.find(scenario, THEIRS)
        found.append(
            target(
                f"{scenario} req/s vs MLServer",
                f"{ours.rps / theirs.rps:.0f}x",
                ">= 30x",
                ours.rps >= 30 * theirs.rps,
            )
        )
        found.append(
            target(
                f"{scenario} p99 vs MLServer",
                f"1/{theirs.p99_ms / ours.p99_ms:.0f}",
                "<= 1/30",
                ours.p99_ms * 30 <= theirs.p99_ms,
            )
        )
    return found
