"""The prediction log against real PostgreSQL: real server processes writing to a private cluster
that the tests really stop and start.

- Every answered request is its rows in the `predictions` table (sample 1.0), with the version and
  variant that answered, the request id the client sent and the features it sent, whatever the
  route (/predict, /batch-predict, /invocations).
- The database stopped under load and started again: no request fails, and every offered row is
  either written (once) or counted dropped because the queue was full; the two add up to the rows
  sent.
- A database unreachable at start does not stop the server: rows queue, and the schema is migrated
  and the rows written once the database answers.
- PREDICTION_LOG_MIGRATE=false against an empty database: the server refuses to start and says why.
- The log's writer process killed under load: another takes over, and every request is in the table
  once; a worker killed outright takes its writer with it (which exits on its own).

The shared PostgreSQL on 127.0.0.1:5432 is never touched: each module run has a cluster of its own
(`tests.postgres_cluster`), and each test a fresh database on it. Phases are driven by counts
(answers, rows written, rows dropped) polled with generous bounds, never by sleeps or durations.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from registry_scripts.processes import ServerProcess, api_process
from server.observe.prediction_log.migrate import VERSION_TABLE, current_revision, head_revision
from server.observe.prediction_log.schema import predictions
from server.observe.prediction_log.writer import WRITER_MODULE
from tests.e2e.load import BackgroundLoad
from tests.helpers import wait_for
from tests.postgres_cluster import PostgresCluster, server_binaries
from tests.registry import FEATURES
from tests.server.metrics_text import counted, sample

COLUMNS = [str(name) for name in FEATURES.columns]
RECORDS = [{k: float(v) for k, v in row.items()} for _, row in FEATURES.iterrows()]
ROW = RECORDS[0]

REQUESTS = 200
# Small enough that the rows answered while the database is down overflow it within a second or two.
OUTAGE_QUEUE_ROWS = 300
POLL_SECONDS = 60  # the bound on every wait; the real waits are a few seconds at most


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    """This module's own PostgreSQL, removed with all its files afterwards."""
    binaries = server_binaries()
    # Not a skip: these tests are the proof of the log's promises, and this machine kind has them.
    assert binaries is not None, "no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql"
    with PostgresCluster(binaries) as cluster:
        yield cluster


@pytest.fixture
def database(cluster: PostgresCluster) -> str:
    """A fresh, empty database on the cluster (started again should an earlier test have left it
    stopped)."""
    if not cluster.running:
        cluster.start()
    return cluster.create_database(f"rs_test_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def engine(cluster: PostgresCluster, database: str) -> Iterator[Engine]:
    """The test's own connection to the database, to read back what the server wrote."""
    engine = sa.create_engine(cluster.sqlalchemy_url(database), pool_pre_ping=True)
    yield engine
    engine.dispose()


def _logging_server(
    base_env: dict[str, str], champion_uri: str, log_path: Path, url: str, **settings: str
) -> ServerProcess:
    return api_process(
        base_env,
        log_path,
        MODEL_URI=champion_uri,
        PREDICTION_LOG_URL=url,
        PREDICTION_LOG_SAMPLE="1.0",
        MAX_BATCH_SIZE="1000",
        **settings,
    )


@dataclass(frozen=True)
class LogCounters:
    """The prediction log's side of /metrics."""

    written: float
    dropped_queue_full: float
    dropped_shutdown: float
    queue_rows: float
    write_errors: float


def _counters(server: ServerProcess) -> LogCounters:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return LogCounters(
        written=counted(text, "prediction_log_written_total"),
        dropped_queue_full=counted(text, "prediction_log_dropped_total", reason="queue_full"),
        dropped_shutdown=counted(text, "prediction_log_dropped_total", reason="shutdown"),
        queue_rows=sample(text, "prediction_log_queue_rows"),
        write_errors=counted(text, "prediction_log_write_errors_total"),
    )


def _row_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(predictions)).scalar_one())


def _distinct_request_ids(engine: Engine) -> int:
    with engine.connect() as connection:
        query = sa.select(sa.func.count(sa.distinct(predictions.c.request_id)))
        return int(connection.execute(query).scalar_one())


def _settled(server: ServerProcess, sent: int) -> LogCounters:
    """The counters once the queue is empty and every one of `sent` rows is written or dropped."""

    def settled() -> bool:
        counters = _counters(server)
        return counters.queue_rows == 0 and counters.written + counters.dropped_queue_full == sent

    wait_for(settled, POLL_SECONDS, f"written + dropped == {sent} rows sent, queue empty", poll=0.1)
    return _counters(server)


@dataclass(frozen=True)
class Sent:
    """One request as sent: its route, body and the records it carries."""

    path: str
    body: dict
    records: list[dict[str, float]]


def _mixed_requests(count: int) -> list[Sent]:
    """`count` requests, mostly single-record /predict, with /invocations (`dataframe_split`, two
    rows) and /batch-predict (three records) mixed in; every record a different row of the data."""
    sent = []
    position = 0

    def take(rows: int) -> list[dict[str, float]]:
        nonlocal position
        taken = [RECORDS[(position + k) % len(RECORDS)] for k in range(rows)]
        position += rows
        return taken

    for index in range(count):
        if index % 5 == 1:
            records = take(2)
            split = {"columns": COLUMNS, "data": [[record[c] for c in COLUMNS] for record in records]}
            sent.append(Sent("/invocations", {"dataframe_split": split}, records))
        elif index % 5 == 3:
            records = take(3)
            sent.append(Sent("/batch-predict", {"records": records}, records))
        else:
            records = take(1)
            sent.append(Sent("/predict", records[0], records))
    return sent


def test_every_request_is_one_row_with_its_version_and_variant(
    base_env: dict[str, str],
    champion_uri: str,
    champion_version: str,
    cluster: PostgresCluster,
    database: str,
    engine: Engine,
    tmp_path: Path,
) -> None:
    requests = _mixed_requests(REQUESTS)
    expected: dict[tuple[str, int], tuple[str, dict[str, float]]] = {}
    with (
        # Two workers, each migrating at start and writing rows of its own to the one table.
        _logging_server(
            base_env, champion_uri, tmp_path / "api.log", cluster.url(database), WORKERS="2"
        ) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        for index, request in enumerate(requests):
            request_id = f"plog-{index}-{uuid.uuid4().hex[:8]}"
            # A connection per request: the kernel spreads them over both workers' sockets.
            headers = {"X-Request-ID": request_id, "Connection": "close"}
            response = http.post(request.path, json=request.body, headers=headers)
            assert response.status_code == 200, (request.path, response.text)
            assert response.headers["x-request-id"] == request_id
            assert response.headers["x-model-version"] == champion_version
            for row_index, record in enumerate(request.records):
                expected[(request_id, row_index)] = (request.path, record)
        wait_for(
            lambda: _counters(server).written >= len(expected),
            POLL_SECONDS,
            f"{len(expected)} rows written",
            poll=0.1,
        )
        counters = _counters(server)
    assert counters.written == len(expected)
    assert counters.dropped_queue_full == counters.dropped_shutdown == 0

    columns = (
        predictions.c.request_id,
        predictions.c.row_index,
        predictions.c.route,
        predictions.c.model_version,
        predictions.c.variant,
        predictions.c.features,
        predictions.c.row_key,
    )
    with engine.connect() as connection:
        rows = connection.execute(sa.select(*columns)).all()
    # Row keys start with a random prefix per process (16 hex digits): both workers wrote.
    assert len({row.row_key[:16] for row in rows}) == 2
    assert len(rows) == len(expected) == REQUESTS + sum(len(r.records) - 1 for r in requests)
    logged = {(row.request_id, row.row_index): row for row in rows}
    assert logged.keys() == expected.keys()  # one row per record, none twice, none missing
    for key, (path, record) in expected.items():
        row = logged[key]
        assert (row.route, row.model_version, row.variant) == (path, champion_version, "champion"), key
        assert row.features == record, key


def test_stopping_the_database_under_load_loses_no_request_and_accounts_for_every_row(
    base_env: dict[str, str],
    champion_uri: str,
    cluster: PostgresCluster,
    database: str,
    engine: Engine,
    tmp_path: Path,
) -> None:
    server = _logging_server(
        base_env,
        champion_uri,
        tmp_path / "api.log",
        cluster.url(database),
        PREDICTION_LOG_QUEUE_ROWS=str(OUTAGE_QUEUE_ROWS),
    )
    with server:
        with BackgroundLoad(server.url, ROW, threads=8, limit=120) as load:
            wait_for(
                lambda: load.total >= 200 and _counters(server).written > 0,
                POLL_SECONDS,
                "rows written before the outage",
                poll=0.1,
            )
            cluster.stop()
            answered_at_stop = load.total
            # Down long enough for the queue to overflow well past its size, with load going on.
            wait_for(
                lambda: (
                    load.total >= answered_at_stop + 3 * OUTAGE_QUEUE_ROWS
                    and _counters(server).dropped_queue_full >= OUTAGE_QUEUE_ROWS
                ),
                POLL_SECONDS,
                "the queue overflowing while the database is down",
                poll=0.1,
            )
            cluster.start()
            written_at_start = _counters(server).written
            # Writing resumes by itself: more than the queue could hold is written after the restart.
            wait_for(
                lambda: _counters(server).written >= written_at_start + 2 * OUTAGE_QUEUE_ROWS,
                POLL_SECONDS,
                "writing resumed after the restart",
                poll=0.1,
            )
            answered_at_recovery = load.total
            wait_for(lambda: load.total >= answered_at_recovery + 300, POLL_SECONDS, "load after the restart")
        sent = load.total  # the load has stopped; the server still answers /metrics

        assert load.errors == []
        assert dict(load.statuses) == {200: sent}, "every request answered 200, through the outage"
        assert set(load.variants) == {"champion"}

        counters = _settled(server, sent)

    assert counters.written + counters.dropped_queue_full == sent
    assert counters.dropped_queue_full > 0, "the outage should have overflowed the queue"
    assert counters.dropped_shutdown == 0
    assert counters.write_errors > 0, "the outage should have failed at least one batch"
    assert _row_count(engine) == counters.written  # every row counted written is there, once
    distinct = _distinct_request_ids(engine)
    assert distinct == counters.written, "one row per single-record request, none written twice"


def test_a_database_down_at_start_is_migrated_and_written_once_it_answers(
    base_env: dict[str, str],
    champion_uri: str,
    cluster: PostgresCluster,
    database: str,
    engine: Engine,
    tmp_path: Path,
) -> None:
    cluster.stop()
    try:
        server = _logging_server(base_env, champion_uri, tmp_path / "api.log", cluster.url(database))
        with server, httpx.Client(base_url=server.url, timeout=30) as http:
            for _ in range(50):
                assert http.post("/predict", json=ROW).status_code == 200
            # The gauge follows the queue at the writer's (failing, backed-off) attempts.
            wait_for(lambda: _counters(server).queue_rows == 50, POLL_SECONDS, "50 rows queued", poll=0.1)
            assert _counters(server).written == 0
            cluster.start()
            wait_for(lambda: _counters(server).written == 50, POLL_SECONDS, "50 rows written", poll=0.1)
            assert "cannot be prepared yet" in server.log()
    finally:
        if not cluster.running:
            cluster.start()
    assert _row_count(engine) == 50
    with engine.connect() as connection:
        assert current_revision(connection) == head_revision()


def test_without_migrating_an_empty_database_the_server_refuses_to_start(
    base_env: dict[str, str],
    champion_uri: str,
    cluster: PostgresCluster,
    database: str,
    engine: Engine,
    tmp_path: Path,
) -> None:
    server = _logging_server(
        base_env, champion_uri, tmp_path / "api.log", cluster.url(database), PREDICTION_LOG_MIGRATE="false"
    )
    with pytest.raises(RuntimeError, match="exited"):
        server.start(timeout=POLL_SECONDS)
    log = server.log()
    assert "PREDICTION_LOG_MIGRATE is false" in log
    assert "python -m server migrate" in log
    tables = set(sa.inspect(engine).get_table_names())
    assert not tables & {"predictions", VERSION_TABLE}, "nothing is created when migrating is off"


def _writers(server: ServerProcess) -> list[psutil.Process]:
    """The server's prediction log writer processes (one per worker)."""
    assert server.process is not None
    children = psutil.Process(server.process.pid).children(recursive=True)
    return [child for child in children if WRITER_MODULE in " ".join(child.cmdline())]


def test_a_writer_killed_under_load_is_replaced_and_every_row_is_written_once(
    base_env: dict[str, str],
    champion_uri: str,
    cluster: PostgresCluster,
    database: str,
    engine: Engine,
    tmp_path: Path,
) -> None:
    server = _logging_server(base_env, champion_uri, tmp_path / "api.log", cluster.url(database))
    with server:
        with BackgroundLoad(server.url, ROW, threads=8, limit=120) as load:
            wait_for(lambda: _counters(server).written >= 200, POLL_SECONDS, "rows written", poll=0.1)
            (first,) = _writers(server)
            first.kill()  # SIGKILL: whatever it had made or was writing, unacknowledged
            first.wait(timeout=POLL_SECONDS)
            written_at_kill = _counters(server).written
            wait_for(
                lambda: len(_writers(server)) == 1 and _counters(server).written >= written_at_kill + 500,
                POLL_SECONDS,
                "another writer writing",
                poll=0.1,
            )
            (second,) = _writers(server)
            assert second.pid != first.pid
        sent = load.total
        assert load.errors == []
        assert dict(load.statuses) == {200: sent}

        counters = _settled(server, sent)
    assert counters.dropped_queue_full == 0
    assert counters.written == sent
    assert counters.write_errors >= 1, "a writer that died is counted as a failed write"
    assert "the prediction log's writer stopped" in server.log()
    distinct = _distinct_request_ids(engine)
    assert _row_count(engine) == distinct == sent, "every request once: resent slices are not written twice"


def test_a_writer_ends_with_its_worker(
    base_env: dict[str, str],
    champion_uri: str,
    cluster: PostgresCluster,
    database: str,
    engine: Engine,
    tmp_path: Path,
) -> None:
    server = _logging_server(base_env, champion_uri, tmp_path / "api.log", cluster.url(database))
    with server, httpx.Client(base_url=server.url, timeout=30) as http:
        for _ in range(100):
            assert http.post("/predict", json=ROW).status_code == 200
        wait_for(lambda: _counters(server).written == 100, POLL_SECONDS, "100 rows written", poll=0.1)
        (writer,) = _writers(server)
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGKILL)  # the worker, and only it: no shutdown of its own
        # Its stdin ended with the worker: the writer exits on its own, leaving nothing behind.
        writer.wait(timeout=POLL_SECONDS)
    assert _row_count(engine) == 100
