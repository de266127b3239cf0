"""`make bench`: this server against `mlflow models serve` (and, on the Open Inference Protocol,
MLServer) on the same registered model, in one run.

Starts a real MLflow tracking server, registers the default model (and a random forest, the
batching showcase, and one model of each runtime: scikit-learn, XGBoost, LightGBM), starts
`mlflow models serve --env-manager local` and this server (one worker each) and a bare FastAPI
route as the /predict yardstick, drives each with wrk (one thread, BENCH_CONNECTIONS connections,
BENCH_SECONDS per run after a warm-up), and prints one table of requests/s, rows/s, p50, p99 and
errors, then the targets as ratios. Comparisons within one server's settings (a challenger beside
the champion; the prediction log off, to SQLite and to PostgreSQL) are taken in turns.

    make bench                       # or: python -m bench.run [--seconds 10] [--out bench/out]
    python -m bench.run --only prediction-log     # some sections only (--only startup load ...)
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import httpx
import psutil
from mlflow import MlflowClient

from bench import open_inference, prediction_log
from bench.load import LoadResult, require_wrk, run_wrk
from model_wrapper import FEATURE_NAMES
from registry_scripts.dataset import load_frame
from registry_scripts.processes import ServerProcess, api_process, free_port, mlflow_scoring_process
from registry_scripts.tracking_server import TrackingServer

JSON = "application/json"
MODEL = "breast-cancer-classifier"


@dataclass
class Row:
    scenario: str
    server: str
    rows_per_request: int
    result: LoadResult

    def as_dict(self) -> dict[str, object]:
        r = self.result
        return {
            "scenario": self.scenario,
            "server": self.server,
            "rows_per_request": self.rows_per_request,
            "rps": round(r.rps, 1),
            "rows_per_s": round(r.rps * self.rows_per_request, 1),
            "p50_ms": r.p50_ms,
            "p99_ms": r.p99_ms,
            "errors": r.errors,
            "requests": r.requests,
        }


@dataclass
class Report:
    machine: dict[str, object]
    settings: dict[str, object]
    rows: list[Row] = field(default_factory=list)
    startup_seconds: dict[str, list[float]] = field(default_factory=dict)
    rss_mib: dict[str, float] = field(default_factory=dict)

    def find(self, scenario: str, server: str) -> LoadResult:
        return next(r.result for r in self.rows if r.scenario == scenario and r.server == server)


def machine() -> dict[str, object]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    versions = {
        name: metadata.version(name) for name in ("mlflow", "fastapi", "uvicorn", "numpy", "scikit-learn")
    }
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        **versions,
    }


def bodies(folder: Path) -> dict[str, Path]:
    """The request bodies, written once: rows from the dataset, cycled to the sizes needed."""
    frame = load_frame()[0]
    columns = list(FEATURE_NAMES)

    def rows(n: int) -> list[list[float]]:
        return [frame.iloc[i % len(frame)].tolist() for i in range(n)]

    documents = {
        "split_1": {"dataframe_split": {"columns": columns, "data": rows(1)}},
        "split_100": {"dataframe_split": {"columns": columns, "data": rows(100)}},
        "split_1000": {"dataframe_split": {"columns": columns, "data": rows(1000)}},
        "record_1": dict(zip(columns, rows(1)[0], strict=True)),
        "records_1000": {"records": [dict(zip(columns, r, strict=True)) for r in rows(1000)]},
        # The same thousand JSON objects in MLflow's records layout: /batch-predict's like for like.
        "dataframe_records_1000": {
            "dataframe_records": [dict(zip(columns, r, strict=True)) for r in rows(1000)]
        },
    }
    paths = {}
    for name, document in documents.items():
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(json.dumps(document))
    return paths


def worker_process(server: ServerProcess) -> psutil.Process:
    """The process that listens on the server's port (its worker)."""
    assert server.process is not None
    root = psutil.Process(server.process.pid)
    for process in [root, *root.children(recursive=True)]:
        try:
            if any(
                c.laddr.port == server.port and c.status == "LISTEN" for c in process.net_connections("tcp")
            ):
                return process
        except psutil.Error:
            continue
    raise RuntimeError(f"no process of {server.command[:3]} listens on {server.port}")


def worker_rss_mib(server: ServerProcess) -> float:
    """Resident memory of the process that listens on the server's port (its worker)."""
    return worker_process(server).memory_info().rss / 2**20


class Bench:
    def __init__(self, work: Path, seconds: float, connections: int) -> None:
        self.work = work
        self.seconds = seconds
        self.connections = connections
        self.bodies = bodies(work)
        self.report = Report(machine(), {"seconds": seconds, "connections": connections, "wrk_threads": 1})

    def load(
        self, scenario: str, server_name: str, url: str, body: str, rows: int, connections: int | None = None
    ) -> None:
        c = connections or self.connections
        run_wrk(
            url, self.bodies[body], seconds=min(2.0, self.seconds), connections=c, content_type=JSON
        )  # warm-up
        result = run_wrk(url, self.bodies[body], seconds=self.seconds, connections=c, content_type=JSON)
        self.report.rows.append(Row(scenario, server_name, rows, result))
        print(
            f"  {scenario:<28} {server_name:<22} {result.rps:>9.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
            f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}",
            flush=True,
        )

    def interleaved(
        self,
        scenario: str,
        servers: dict[str, str],
        body: str,
        connections: int,
        rounds: int = 5,
        after_run: dict[str, Callable[[], None]] | None = None,
        round_seconds: float | None = None,
    ) -> None:
        """`scenario` for each server in short runs taken in turns (A B, B A, ...), so that a drift
        of the machine's speed within the run falls on both alike; p50 and p99 are the medians
        of the rounds'. For comparisons within a few per cent, which one run apiece cannot make.
        `after_run[name]`, where given, is called after each of that server's runs (warm-up
        included), before the next server's starts. Each round lasts `round_seconds`, or the run's
        seconds shared among the rounds."""
        after = after_run or {}
        per_round = round_seconds or max(1.0, self.seconds / rounds)
        names = list(servers)
        results: dict[str, list[LoadResult]] = {name: [] for name in names}
        for name in names:
            run_wrk(servers[name], self.bodies[body], seconds=1, connections=connections, content_type=JSON)
            if name in after:
                after[name]()
        for turn in range(rounds):
            for name in names if turn % 2 == 0 else reversed(names):
                results[name].append(
                    run_wrk(
                        servers[name], self.bodies[body], seconds=per_round, connections=connections,
                        content_type=JSON,
                    )
                )  # fmt: skip
                if name in after:
                    after[name]()
        for name in names:
            runs = results[name]
            result = LoadResult(
                requests=sum(r.requests for r in runs),
                seconds=sum(r.seconds for r in runs),
                p50_ms=statistics.median(r.p50_ms for r in runs),
                p99_ms=statistics.median(r.p99_ms for r in runs),
                errors=sum(r.errors for r in runs),
            )
            self.report.rows.append(Row(scenario, name, 1, result))
            print(
                f"  {scenario:<28} {name:<22} {result.rps:>9.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
                f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}  ({rounds} rounds in turns)",
                flush=True,
            )

    def startup(self, name: str, make: Callable[[], ServerProcess], runs: int = 3) -> None:
        times = []
        for _ in range(runs):
            server = make()
            server.start(timeout=180)
            times.append(server.ready_seconds)
            server.stop()
        self.report.startup_seconds[name] = times
        each = ", ".join(f"{t:.2f}" for t in times)
        print(f"  start to ready  {name:<22} median {statistics.median(times):.2f} s  ({each})")


SECTIONS = ("startup", "load", "open-inference", "challenger", "prediction-log", "forest", "flavours")


def run(seconds: float, connections: int, out: Path, only: tuple[str, ...] = SECTIONS) -> Report:
    require_wrk()
    work = Path(tempfile.mkdtemp(prefix="registry-serve-bench-"))
    bench = Bench(work, seconds, connections)
    bench.report.settings["sections"] = list(only)
    with TrackingServer(work / "mlflow") as tracking:
        env = {**os.environ, "MLFLOW_TRACKING_URI": tracking.url, "PYTHONWARNINGS": "ignore"}
        # Settings from around the bench that would change what is measured: every server here
        # starts without a prediction log unless its section sets one.
        for name in ("PROMETHEUS_MULTIPROC_DIR", "PREDICTION_LOG_URL", "PREDICTION_LOG_SAMPLE"):
            env.pop(name, None)
        champion = _train(env, ("--model-type", "logistic_regression"), promote=True)
        champion_uri = f"models:/{MODEL}@champion"
        print(f"registered {MODEL} v{champion} (logistic regression, @champion)")
        logs = work / "logs"
        if "startup" in only:
            _startup_section(bench, env, champion_uri, logs)
        if "load" in only:
            _load_section(bench, env, champion_uri, logs)
        if "open-inference" in only:
            open_inference.section(bench, env, champion_uri, work)
        if "challenger" in only:
            _challenger_section(bench, env, tracking, champion_uri, logs)
        if "prediction-log" in only:
            _prediction_log_section(bench, env, champion_uri, work)
        if "forest" in only:
            _forest_section(bench, env, logs)
        if "flavours" in only:
            _flavours_section(bench, env, logs)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"results-{stamp}.json").write_text(json.dumps(_as_json(bench.report), indent=2))
    markdown = render(bench.report)
    (out / f"results-{stamp}.md").write_text(markdown)
    print()
    print(markdown)
    return bench.report


def _startup_section(bench: Bench, env: dict[str, str], champion_uri: str, logs: Path) -> None:
    print("start-up (spawn to /ping 200, model pulled from the registry):")
    bench.startup(
        "mlflow models serve", lambda: mlflow_scoring_process(env, champion_uri, logs / "mlflow.log")
    )
    bench.startup("registry-serve", lambda: api_process(env, logs / "api.log", MODEL_URI=champion_uri))


def _load_section(bench: Bench, env: dict[str, str], champion_uri: str, logs: Path) -> None:
    print(f"load (wrk, 1 thread, {bench.connections} connections, {bench.seconds:g} s per run):")
    baseline_port = free_port()
    baseline = ServerProcess(
        [sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--port", str(baseline_port),
         "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"],
        env, baseline_port, "/docs", logs / "baseline.log",
    )  # fmt: skip
    with (
        mlflow_scoring_process(env, champion_uri, logs / "mlflow.log") as theirs,
        api_process(env, logs / "api.log", MODEL_URI=champion_uri) as ours,
        api_process(env, logs / "api-unbatched.log", MODEL_URI=champion_uri, BATCH_MAX_ROWS="1") as unbatched,
        baseline,
    ):
        for name, server in (("mlflow models serve", theirs), ("registry-serve", ours)):
            bench.load("invocations 1 row", name, f"{server.url}/invocations", "split_1", 1)
            bench.load("invocations 100 rows", name, f"{server.url}/invocations", "split_100", 100)
            bench.load("invocations 1000 rows", name, f"{server.url}/invocations", "split_1000", 1000)
            bench.load(
                "invocations 1000 records",
                name,
                f"{server.url}/invocations",
                "dataframe_records_1000",
                1000,
            )
        bench.load(
            "batch-predict 1000 records",
            "registry-serve",
            f"{ours.url}/batch-predict",
            "records_1000",
            1000,
        )
        bench.load("predict 1 row", "bare FastAPI route", f"{baseline.url}/predict", "record_1", 1)
        bench.load("predict 1 row", "registry-serve", f"{ours.url}/predict", "record_1", 1)
        bench.load("predict 1 row", "registry-serve unbatched", f"{unbatched.url}/predict", "record_1", 1)
        # Idle latency, batching on against off: within a few per cent, so taken in turns.
        idle = {"registry-serve": ours, "registry-serve unbatched": unbatched}
        bench.interleaved(
            "predict 1 row, 1 connection",
            {name: f"{server.url}/predict" for name, server in idle.items()},
            "record_1",
            connections=1,
        )
        bench.report.rss_mib = {
            "mlflow models serve": worker_rss_mib(theirs),
            "registry-serve": worker_rss_mib(ours),
        }


def _challenger_section(
    bench: Bench, env: dict[str, str], tracking: TrackingServer, champion_uri: str, logs: Path
) -> None:
    challenger = _train(env, ("--model-type", "logistic_regression", "--seed", "7"), promote=False)
    MlflowClient(tracking.url).set_registered_model_alias(MODEL, "challenger", challenger)
    print(f"a challenger (v{challenger}, logistic regression retrained) beside the champion, in turns:")
    variants = {"CHALLENGER_ALIAS": "challenger", "MODEL_URI": champion_uri}
    with (
        api_process(env, logs / "api-alone.log", MODEL_URI=champion_uri) as alone,
        api_process(env, logs / "api-shadow.log", CHALLENGER_MODE="shadow", **variants) as shadow,
        api_process(env, logs / "api-split.log", CHALLENGER_PERCENT="50", **variants) as split,
    ):
        for server in (shadow, split):
            _await_challenger(server)
        bench.interleaved(
            CHALLENGER_SCENARIO,
            {
                "registry-serve": f"{alone.url}/predict",
                "registry-serve shadow": f"{shadow.url}/predict",
                "registry-serve split 50%": f"{split.url}/predict",
            },
            "record_1",
            connections=bench.connections,
        )
        scored = _shadow_numbers(shadow)
        print(f"  shadow: {scored}")
        bench.report.settings["shadow"] = scored


def _prediction_log_section(bench: Bench, env: dict[str, str], champion_uri: str, work: Path) -> None:
    """Issue 15's: logging every request (sample 1.0) costs at most 10% of single-row throughput
    and of p99 at 16 connections, against the log off, in the same run (taken in turns)."""
    print("the prediction log, off against every request logged (sample 1.0), in turns:")
    logs = work / "logs"
    sqlite_url = f"sqlite:///{work / 'prediction-log' / 'predictions.db'}"
    with contextlib.ExitStack() as stack:
        postgres_url = stack.enter_context(prediction_log.postgres_database())
        databases = {LOG_SQLITE: sqlite_url}
        if postgres_url is not None:
            databases[LOG_POSTGRES] = postgres_url
        servers = {
            LOG_OFF: stack.enter_context(
                api_process(env, logs / "api-log-off.log", MODEL_URI=champion_uri, PREDICTION_LOG_URL="")
            )
        }
        for name, url in databases.items():
            slug = name.rsplit(" ", 1)[1].lower()
            servers[name] = stack.enter_context(
                api_process(
                    env,
                    logs / f"api-log-{slug}.log",
                    MODEL_URI=champion_uri,
                    PREDICTION_LOG_URL=url,
                    PREDICTION_LOG_SAMPLE="1.0",
                )
            )
        workers = {name: worker_process(server) for name, server in servers.items()}
        load_before = os.getloadavg()[0]
        cpu_before = {name: prediction_log.cpu_seconds(process) for name, process in workers.items()}
        writer_cpu_before = {name: prediction_log.writer_cpu_seconds(workers[name]) for name in databases}
        backlogs = {name: prediction_log.Backlog() for name in databases}
        after_run = {
            name: functools.partial(backlogs[name].after_run, servers[name].url) for name in databases
        }
        for scenario, path, body in (
            (LOG_PREDICT_SCENARIO, "/predict", "record_1"),
            (LOG_INVOCATIONS_SCENARIO, "/invocations", "split_1"),
        ):
            bench.interleaved(
                scenario,
                {name: f"{server.url}{path}" for name, server in servers.items()},
                body,
                connections=bench.connections,
                after_run=after_run,
                rounds=LOG_ROUNDS,
                round_seconds=LOG_ROUND_SECONDS,
            )
        found: dict[str, object] = {}
        for name, server in servers.items():
            numbers = prediction_log.log_numbers(server.url)
            cpu = prediction_log.cpu_seconds(workers[name]) - cpu_before[name]
            per_request = cpu * 1000 / max(numbers.requests, 1)
            if name in databases:
                database_cpu = None
                if name == LOG_POSTGRES:
                    backends = prediction_log.postgres_backend_cpu_seconds(databases[name])
                    database_cpu = None if backends is None else backends * 1000 / max(numbers.requests, 1)
                rows = prediction_log.table_rows(databases[name])
                writer_cpu = prediction_log.writer_cpu_seconds(workers[name]) - writer_cpu_before[name]
                found[name] = prediction_log.summary(
                    numbers,
                    backlogs[name],
                    rows,
                    per_request,
                    database_cpu,
                    writer_cpu * 1000 / max(numbers.requests, 1),
                )
            else:
                found[name] = prediction_log.summary(numbers, None, None, per_request)
            print(f"  {name}: {found[name]}")
        # After the accounting above, which they would otherwise be part of: one unbroken run each,
        # in which the writer must keep up with the traffic as it comes.
        for name, server in servers.items():
            result, kept = prediction_log.unbroken_run(
                server.url, bench.bodies["record_1"], seconds=bench.seconds, connections=bench.connections
            )
            bench.report.rows.append(Row(LOG_UNBROKEN_SCENARIO, name, 1, result))
            print(
                f"  {LOG_UNBROKEN_SCENARIO:<28} {name:<22} {result.rps:>9.1f} req/s  "
                f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  errors {result.errors}  "
                f"{kept if name in databases else ''}",
                flush=True,
            )
            numbers = found[name]
            assert isinstance(numbers, dict)
            if name in databases:
                numbers["unbroken_run"] = kept
        bench.report.settings["prediction_log"] = found
        # What else ran on the machine meanwhile: the 1-minute load average as the section began and ended.
        bench.report.settings["prediction_log_load_average"] = [load_before, os.getloadavg()[0]]
        print(f"  load average (1 min) at the start and end: {load_before:.2f}, {os.getloadavg()[0]:.2f}")


def _forest_section(bench: Bench, env: dict[str, str], logs: Path) -> None:
    forest = _train(env, ("--model-type", "random_forest"), promote=False)
    forest_uri = f"models:/{MODEL}/{forest}"
    print(f"random forest (200 trees, v{forest}), single rows: what micro-batching buys a costly model:")
    with (
        mlflow_scoring_process(env, forest_uri, logs / "mlflow-rf.log") as theirs,
        api_process(env, logs / "api-rf.log", MODEL_URI=forest_uri) as ours,
        api_process(
            env, logs / "api-rf-unbatched.log", MODEL_URI=forest_uri, BATCH_MAX_ROWS="1"
        ) as unbatched,
    ):
        bench.load(
            "forest invocations 1 row", "mlflow models serve", f"{theirs.url}/invocations", "split_1", 1
        )
        bench.load("forest invocations 1 row", "registry-serve", f"{ours.url}/invocations", "split_1", 1)
        bench.load(
            "forest invocations 1 row",
            "registry-serve unbatched",
            f"{unbatched.url}/invocations",
            "split_1",
            1,
        )


def _flavours_section(bench: Bench, env: dict[str, str], logs: Path) -> None:
    print("every runtime against mlflow models serve on the same model:")
    for flavour in FLAVOURS:
        version = _train(env, flavour.train_args, promote=False)
        uri = f"models:/{MODEL}/{version}"
        with (
            mlflow_scoring_process(env, uri, logs / f"mlflow-{flavour.slug}.log") as theirs,
            api_process(env, logs / f"api-{flavour.slug}.log", MODEL_URI=uri, **flavour.settings) as ours,
        ):
            for name, server in (("mlflow models serve", theirs), ("registry-serve", ours)):
                url = f"{server.url}/invocations"
                bench.load(f"{flavour.name} invocations 1 row", name, url, "split_1", 1)
                bench.load(f"{flavour.name} invocations 100 rows", name, url, "split_100", 100)


@dataclass(frozen=True)
class Flavour:
    """One runtime's model, as `registry_scripts.train` logs it; `linear` sets its target."""

    name: str
    train_args: tuple[str, ...]
    linear: bool
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        return self.name.replace(" ", "-")


# mlflow.sklearn.autolog() pickles its model (cloudpickle).
PICKLED = {"ALLOW_PICKLED_MODELS": "true"}
FLAVOURS = (
    Flavour("sklearn logistic", ("--flavor", "sklearn", "--estimator", "logistic_regression"), linear=True),
    Flavour("sklearn forest", ("--flavor", "sklearn", "--estimator", "random_forest"), linear=False),
    Flavour("sklearn autolog pipeline", ("--flavor", "sklearn", "--autolog"), linear=True, settings=PICKLED),
    Flavour("xgboost classifier", ("--flavor", "xgboost", "--estimator", "classifier"), linear=False),
    Flavour("xgboost booster", ("--flavor", "xgboost", "--estimator", "booster"), linear=False),
    Flavour("lightgbm classifier", ("--flavor", "lightgbm", "--estimator", "classifier"), linear=False),
    Flavour("lightgbm booster", ("--flavor", "lightgbm", "--estimator", "booster"), linear=False),
)  # fmt: skip


CHALLENGER_SCENARIO = "predict 1 row, challenger"
LOG_PREDICT_SCENARIO = "predict 1 row, prediction log"
LOG_INVOCATIONS_SCENARIO = "invocations 1 row, prediction log"
LOG_UNBROKEN_SCENARIO = "predict 1 row, prediction log, one unbroken run"
# A 10% difference measured on a machine whose speed wanders by 15% from one run to the next: many
# short rounds in turns, so that the wander falls on every server alike and averages out.
LOG_ROUNDS = 15
LOG_ROUND_SECONDS = 2.0
LOG_OFF = "registry-serve log off"
LOG_SQLITE = "registry-serve log SQLite"
LOG_POSTGRES = "registry-serve log PostgreSQL"


def _await_challenger(server: ServerProcess, timeout: float = 120) -> None:
    """Until the server has loaded its challenger (in the background, after start-up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        variants = httpx.get(f"{server.url}/model/variants", timeout=10).json()["variants"]
        if any(v["variant"] == "challenger" and v["state"] == "serving" for v in variants):
            return
        time.sleep(0.2)
    raise RuntimeError(f"no challenger loaded by {server.url} within {timeout:g} s")


def _shadow_numbers(server: ServerProcess) -> dict[str, object]:
    """What the shadow did during the run: copies by outcome, and the agreement it measured."""
    shadow = httpx.get(f"{server.url}/model/variants", timeout=10).json()["shadow"]
    return {
        "requests": shadow["requests"],
        "rows_compared": shadow["rows_compared"],
        "agreement": shadow["agreement"],
    }


def _train(env: dict[str, str], model: tuple[str, ...], *, promote: bool) -> str:
    """Register a version with `registry_scripts.train` and these arguments; its number."""
    args = [sys.executable, "-m", "registry_scripts.train", *model]
    if promote:
        args.append("--promote")
    return subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout.strip()


def _as_json(report: Report) -> dict[str, object]:
    return {
        "machine": report.machine,
        "settings": report.settings,
        "startup_seconds": report.startup_seconds,
        "rss_mib": report.rss_mib,
        "runs": [row.as_dict() for row in report.rows],
        "targets": [asdict(t) for t in targets(report)],
    }


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    goal: str
    met: bool


def targets(report: Report) -> list[Target]:
    """The targets of the sections that ran (`--only` leaves the others out)."""
    ours = "registry-serve"
    errors = sum(r.result.errors for r in report.rows if r.server.startswith(ours))
    return [
        *_load_targets(report),
        *open_inference.targets(report, Target),
        *_startup_targets(report),
        *_challenger_targets(report),
        *_prediction_log_targets(report),
        *_flavour_targets(report),
        Target("errors in this server's runs", str(errors), "0", errors == 0),
    ]


def _load_targets(report: Report) -> list[Target]:
    theirs, ours = "mlflow models serve", "registry-serve"
    if not any(row.scenario == "invocations 1 row" for row in report.rows):
        return []
    one_them, one_us = report.find("invocations 1 row", theirs), report.find("invocations 1 row", ours)
    hundred_them, hundred_us = (
        report.find("invocations 100 rows", theirs),
        report.find("invocations 100 rows", ours),
    )
    thousand_them = report.find("invocations 1000 rows", theirs)
    thousand_us = report.find("invocations 1000 rows", ours)
    batch_us = report.find("batch-predict 1000 records", ours)
    records_them = report.find("invocations 1000 records", theirs)
    bare, predict = report.find("predict 1 row", "bare FastAPI route"), report.find("predict 1 row", ours)
    idle_on = report.find("predict 1 row, 1 connection", ours)
    idle_off = report.find("predict 1 row, 1 connection", "registry-serve unbatched")
    rss_us, rss_them = report.rss_mib[ours], report.rss_mib[theirs]
    return [
        Target(
            "1-row /invocations req/s vs mlflow",
            f"{one_us.rps / one_them.rps:.0f}x",
            ">= 50x",
            one_us.rps >= 50 * one_them.rps,
        ),
        Target(
            "1-row /invocations p99 vs mlflow",
            f"1/{one_them.p99_ms / one_us.p99_ms:.0f}",
            "<= 1/50",
            one_us.p99_ms * 50 <= one_them.p99_ms,
        ),
        Target(
            "100-row /invocations req/s vs mlflow",
            f"{hundred_us.rps / hundred_them.rps:.0f}x",
            ">= 20x",
            hundred_us.rps >= 20 * hundred_them.rps,
        ),
        Target(
            "1000-record /batch-predict rows/s vs mlflow 1000-row /invocations",
            f"{batch_us.rps / thousand_them.rps:.0f}x",
            ">= 20x",
            batch_us.rps >= 20 * thousand_them.rps,
        ),
        Target(
            "1000-record /batch-predict rows/s vs mlflow 1000-record /invocations (dataframe_records)",
            f"{batch_us.rps / records_them.rps:.0f}x",
            ">= 20x",
            batch_us.rps >= 20 * records_them.rps,
        ),
        Target(
            "1000-row /invocations rows/s vs mlflow",
            f"{thousand_us.rps / thousand_them.rps:.0f}x",
            ">= 20x",
            thousand_us.rps >= 20 * thousand_them.rps,
        ),
        Target(
            "1-row /predict vs bare FastAPI route",
            f"{predict.rps / bare.rps:.0%}",
            ">= 60%",
            predict.rps >= 0.6 * bare.rps,
        ),
        Target(
            "idle p50 latency, batching on vs off",
            f"{idle_on.p50_ms * 1000:.0f} vs {idle_off.p50_ms * 1000:.0f} us",
            "not higher (within 10%)",
            idle_on.p50_ms <= idle_off.p50_ms * 1.1,
        ),
        Target(
            "worker RSS vs mlflow worker", f"{rss_us:.0f} vs {rss_them:.0f} MiB", "<=", rss_us <= rss_them
        ),
    ]


def _startup_targets(report: Report) -> list[Target]:
    theirs, ours = "mlflow models serve", "registry-serve"
    if theirs not in report.startup_seconds or ours not in report.startup_seconds:
        return []
    start_them = statistics.median(report.startup_seconds[theirs])
    start_us = statistics.median(report.startup_seconds[ours])
    return [
        Target(
            "start to ready vs mlflow",
            f"{start_us:.2f} vs {start_them:.2f} s",
            "<= half",
            start_us <= start_them / 2,
        ),
    ]


def _challenger_targets(report: Report) -> list[Target]:
    """Issue 14's: a shadow challenger costs the answers' p99 at most 15% (16 connections)."""
    if not any(row.scenario == CHALLENGER_SCENARIO for row in report.rows):
        return []
    alone = report.find(CHALLENGER_SCENARIO, "registry-serve")
    shadow = report.find(CHALLENGER_SCENARIO, "registry-serve shadow")
    return [
        Target(
            "shadow mode p99 vs no challenger (1-row /predict)",
            f"{shadow.p99_ms:.2f} vs {alone.p99_ms:.2f} ms ({shadow.p99_ms / alone.p99_ms - 1:+.0%})",
            "<= +15%",
            shadow.p99_ms <= 1.15 * alone.p99_ms,
        ),
    ]


def _prediction_log_targets(report: Report) -> list[Target]:
    """Issue 15's: logging every request (sample 1.0) costs at most 10% of single-row throughput
    and at most 10% of p99 at 16 connections, against the log off in the same run; and every
    request's row is written (a dropped row means the writer could not keep up)."""
    found: list[Target] = []
    logged = report.settings.get("prediction_log", {})
    assert isinstance(logged, dict)
    for scenario, route in ((LOG_PREDICT_SCENARIO, "/predict"), (LOG_INVOCATIONS_SCENARIO, "/invocations")):
        if not any(row.scenario == scenario for row in report.rows):
            continue
        off = report.find(scenario, LOG_OFF)
        for server in (LOG_SQLITE, LOG_POSTGRES):
            if not any(row.scenario == scenario and row.server == server for row in report.rows):
                continue
            on = report.find(scenario, server)
            database = server.rsplit(" ", 1)[1]
            found += [
                Target(
                    f"prediction log to {database}, 1-row {route} req/s vs log off",
                    f"{on.rps:,.0f} vs {off.rps:,.0f} ({on.rps / off.rps:.0%})",
                    ">= 90%",
                    on.rps >= 0.9 * off.rps,
                ),
                Target(
                    f"prediction log to {database}, 1-row {route} p99 vs log off",
                    f"{on.p99_ms:.2f} vs {off.p99_ms:.2f} ms ({on.p99_ms / off.p99_ms - 1:+.0%})",
                    "<= +10%",
                    on.p99_ms <= 1.1 * off.p99_ms,
                ),
            ]
    for server in (LOG_SQLITE, LOG_POSTGRES):
        numbers = logged.get(server)
        if not isinstance(numbers, dict):
            continue
        database = server.rsplit(" ", 1)[1]
        found.append(
            Target(
                f"prediction log to {database}: requests served, rows written / dropped",
                f"{numbers['requests']:,} / {numbers['written']:,} / {numbers['dropped']:,}",
                "every request written, none dropped",
                numbers["written"] == numbers["requests"] and numbers["dropped"] == 0,
            )
        )
    return found


def _flavour_targets(report: Report) -> list[Target]:
    """Issue 13's: single-row /invocations >= 30x mlflow's req/s for linear models and >= 10x for
    tree ensembles, p99 <= 1/10 of its p99, 100-row >= 10x, for every runtime."""
    theirs, ours = "mlflow models serve", "registry-serve"
    found: list[Target] = []
    for flavour in FLAVOURS:
        one = f"{flavour.name} invocations 1 row"
        hundred = f"{flavour.name} invocations 100 rows"
        if not any(row.scenario == one for row in report.rows):
            continue
        one_them, one_us = report.find(one, theirs), report.find(one, ours)
        hundred_them, hundred_us = report.find(hundred, theirs), report.find(hundred, ours)
        goal = 30 if flavour.linear else 10
        found += [
            Target(
                f"{one} req/s vs mlflow",
                f"{one_us.rps / one_them.rps:.0f}x",
                f">= {goal}x",
                one_us.rps >= goal * one_them.rps,
            ),
            Target(
                f"{one} p99 vs mlflow",
                f"1/{one_them.p99_ms / one_us.p99_ms:.0f}",
                "<= 1/10",
                one_us.p99_ms * 10 <= one_them.p99_ms,
            ),
            Target(
                f"{hundred} req/s vs mlflow",
                f"{hundred_us.rps / hundred_them.rps:.0f}x",
                ">= 10x",
                hundred_us.rps >= 10 * hundred_them.rps,
            ),
        ]
    return found


def render(report: Report) -> str:
    lines = [
        "| scenario | server | req/s | rows/s | p50 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in report.rows:
        r = row.result
        lines.append(
            f"| {row.scenario} | {row.server} | {r.rps:,.0f} | {r.rps * row.rows_per_request:,.0f} | "
            f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} |"
        )
    lines += ["", "| target | measured | goal | met |", "|---|---|---|---|"]
    lines += [f"| {t.name} | {t.measured} | {t.goal} | {'yes' if t.met else 'NO'} |" for t in targets(report)]
    m = report.machine
    lines += [
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; Linux {m['kernel']}; "
        f"Python {m['python']}; "
        f"mlflow {m['mlflow']}, fastapi {m['fastapi']}, uvicorn {m['uvicorn']}, numpy {m['numpy']}, "
        f"scikit-learn {m['scikit-learn']}. wrk: 1 thread, {report.settings['connections']} connections, "
        f"{report.settings['seconds']} s per run after a warm-up, on the same machine.",
    ]
    if "shadow" in report.settings:
        lines += ["", f"Shadow challenger during its runs: {report.settings['shadow']}."]
    logged = report.settings.get("prediction_log")
    if isinstance(logged, dict):
        lines += [
            "",
            "Prediction log section (each server's own /metrics after its runs, warm-ups included; "
            "CPU: user + system time over the section per request served, the worker's and its writer's):",
        ]
        lines += [f"- {name}: {_log_line(numbers)}" for name, numbers in logged.items()]
    return "\n".join(lines) + "\n"


def _log_line(numbers: dict[str, object]) -> str:
    line = f"{numbers['requests']:,} requests, {numbers['cpu_ms_per_request']} ms CPU per request"
    if "writer_cpu_ms_per_request" in numbers:
        line += f" (and {numbers['writer_cpu_ms_per_request']} ms in its log writer process)"
    if "database_cpu_ms_per_request" in numbers:
        line += f" (and {numbers['database_cpu_ms_per_request']} ms in PostgreSQL's backends)"
    if "written" not in numbers:
        return line
    backlog = numbers["backlog"]
    assert isinstance(backlog, dict)
    reasons = numbers["dropped_by_reason"] or {}
    assert isinstance(reasons, dict)
    dropped = ", ".join(f"{reason} {count:,}" for reason, count in reasons.items() if count)
    line += (
        f"; rows written {numbers['written']:,}, dropped {numbers['dropped']:,}"
        f"{f' ({dropped})' if dropped else ''}, in the table {numbers['rows_in_table']:,}, "
        f"queued at the end {numbers['queued']}, failed writes {numbers['write_errors']}; "
        f"rows still queued as each wrk run ended: at most {max(backlog['at_end'], default=0):,}, "
        f"written within {max(backlog['drain_seconds'], default=0)} s"
    )
    if numbers["dropped"]:
        line += ". Rows were dropped: the writer did not keep up"
    kept = numbers.get("unbroken_run")
    if isinstance(kept, dict):
        line += (
            f". Its unbroken {kept['seconds']} s run: {kept['rps']:,.0f} req/s answered, "
            f"{kept['rows_written_per_s']:,.0f} rows/s written, {kept['queued_at_end']:,} rows queued at its "
            f"end (written within {kept['drain_seconds']} s), {kept['dropped']:,} dropped"
        )
    return line


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", 10)))
    parser.add_argument("--connections", type=int, default=int(os.environ.get("BENCH_CONNECTIONS", 16)))
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        metavar="SECTION",
        help=f"run only these sections (default: all of them): {', '.join(SECTIONS)}",
    )
    args = parser.parse_args()
    report = run(args.seconds, args.connections, args.out, tuple(args.only))
    return 0 if all(t.met for t in targets(report) if t.name.startswith("errors")) else 1


if __name__ == "__main__":
    sys.exit(main())
