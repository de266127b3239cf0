"""The prediction log's part of `make bench`: a fresh PostgreSQL database for the run, and what a
logging server says it did (rows written, dropped and waiting, against the requests it served).

The section itself runs in `bench.run` (`--only prediction-log`): one worker with the log off, one
logging every request (PREDICTION_LOG_SAMPLE=1.0) to SQLite (`make run`'s default) and one to
PostgreSQL (compose's and k8s's), all three on the same model, taken in turns by wrk.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import psutil
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from bench.load import LoadResult, run_wrk

POSTGRES = "postgresql://postgres@127.0.0.1:5432"
JSON = "application/json"


@contextlib.contextmanager
def postgres_database(server: str = POSTGRES) -> Iterator[str | None]:
    """A fresh database on the machine's PostgreSQL for this run, dropped afterwards; None (and a
    line saying why) when no PostgreSQL answers there, so the rest of the section still runs."""
    import psycopg

    name = f"bench_prediction_log_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        print(f"  no PostgreSQL at {server} ({reason}): its rows are skipped")
        yield None
        return
    try:
        yield f"postgresql+psycopg://{server.removeprefix('postgresql://')}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@dataclass
class LogNumbers:
    """One server's own account, read from its /metrics: requests answered (every prediction
    route, warm-ups included), and the log's rows written, dropped (by reason) and waiting."""

    requests: int
    written: int
    dropped: dict[str, int]
    queued: int
    write_errors: int

    @property
    def dropped_rows(self) -> int:
        return sum(self.dropped.values())


def log_numbers(url: str) -> LogNumbers:
    """`url`'s /metrics, summed over labels."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    totals: dict[str, float] = {}
    dropped: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "prediction_log_dropped_total":
                reason = sample.labels.get("reason", "")
                dropped[reason] = dropped.get(reason, 0) + int(sample.value)
            elif sample.name in (
                "prediction_requests_total",
                "prediction_log_written_total",
                "prediction_log_queue_rows",
                "prediction_log_write_errors_total",
            ):
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return LogNumbers(
        requests=int(totals.get("prediction_requests_total", 0)),
        written=int(totals.get("prediction_log_written_total", 0)),
        dropped=dropped,
        queued=int(totals.get("prediction_log_queue_rows", 0)),
        write_errors=int(totals.get("prediction_log_write_errors_total", 0)),
    )


@dataclass
class Backlog:
    """The rows a logging server still had queued when each of its wrk runs ended, and how long
    they took to be written before the next run (in turns, so that no server's writing spills
    into another's run)."""

    at_end: list[int] = field(default_factory=list)
    drain_seconds: list[float] = field(default_factory=list)

    def after_run(self, url: str, timeout: float = 60) -> None:
        started = time.monotonic()
        queued = log_numbers(url).queued
        self.at_end.append(queued)
        while queued and time.monotonic() - started < timeout:
            time.sleep(0.05)
            queued = log_numbers(url).queued
        self.drain_seconds.append(round(time.monotonic() - started, 2))


def unbroken_run(
    url: str, body: Path, *, seconds: float, connections: int
) -> tuple[LoadResult, dict[str, object]]:
    """One unbroken wrk run of `seconds` on `url`/predict: its result, and for a logging server the
    rows written meanwhile against the requests answered and what was still queued when it ended.
    (In the runs taken in turns the queue empties between runs; here the writer has to keep up.)"""
    before = log_numbers(url)
    result = run_wrk(url + "/predict", body, seconds=seconds, connections=connections, content_type=JSON)
    after = log_numbers(url)
    backlog = Backlog()
    backlog.after_run(url)
    return result, {
        "seconds": round(result.seconds, 1),
        "rps": round(result.rps, 1),
        "rows_written_per_s": round((after.written - before.written) / result.seconds, 1),
        "queued_at_end": after.queued,
        "dropped": after.dropped_rows - before.dropped_rows,
        "drain_seconds": backlog.drain_seconds[0],
    }


def table_rows(database_url: str) -> int:
    """Rows in the database's `predictions` table, counted by the database itself."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text("SELECT count(*) FROM predictions")).scalar_one())
    finally:
        engine.dispose()


def postgres_backend_cpu_seconds(database_url: str, server: str = POSTGRES) -> float | None:
    """CPU time of the PostgreSQL backends connected to `database_url`'s database now (the
    server's pooled connections: they live as long as the server), or None where they cannot be
    read (PostgreSQL on another machine, or another user's processes hidden from this one)."""
    import psycopg

    name = sa.make_url(database_url).database
    with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as admin:
        pids = [
            row[0] for row in admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [name])
        ]
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
        except psutil.Error:
            return None
    return total if pids else None


def writer_cpu_seconds(worker: psutil.Process) -> float:
    """CPU time of the worker's prediction log writer process(es) so far (0.0 with none)."""
    from server.observe.prediction_log.writer import WRITER_MODULE

    total = 0.0
    for child in worker.children():
        try:
            if WRITER_MODULE in " ".join(child.cmdline()):
                total += cpu_seconds(child)
        except psutil.NoSuchProcess:
            continue
    return total


def cpu_seconds(process: psutil.Process) -> float:
    """User and system CPU time of `process` (all its threads) so far."""
    times = process.cpu_times()
    return times.user + times.system


def summary(
    numbers: LogNumbers,
    backlog: Backlog | None,
    rows_in_table: int | None,
    cpu_ms_per_request: float,
    database_cpu_ms_per_request: float | None = None,
    writer_cpu_ms_per_request: float | None = None,
) -> dict[str, object]:
    """One server's line in the report's settings: what it served and logged, and its CPU cost
    (its worker's, its log writer's, and that of its database's server processes, for PostgreSQL)."""
    found: dict[str, object] = {
        "requests": numbers.requests,
        "cpu_ms_per_request": round(cpu_ms_per_request, 3),
    }
    if writer_cpu_ms_per_request is not None:
        found["writer_cpu_ms_per_request"] = round(writer_cpu_ms_per_request, 3)
    if database_cpu_ms_per_request is not None:
        found["database_cpu_ms_per_request"] = round(database_cpu_ms_per_request, 3)
    if backlog is not None:
        found.update(
            written=numbers.written,
            dropped=numbers.dropped_rows,
            dropped_by_reason=numbers.dropped,
            queued=numbers.queued,
            write_errors=numbers.write_errors,
            rows_in_table=rows_in_table,
            backlog=asdict(backlog),
        )
    return found
