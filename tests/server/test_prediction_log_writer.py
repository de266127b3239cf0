"""The prediction log's writer on its own, against a fresh database on the machine's PostgreSQL:
the queue's bound (rows beyond it dropped and counted), a row the database will always refuse
(dropped and counted, the others of its batch written), and shutdown with the database gone (what
waits is counted, never lost silently)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from model_wrapper import Prediction
from registry_scripts.processes import free_port
from server.observe.prediction_log import inserts
from server.observe.prediction_log.database import open_engine
from server.observe.prediction_log.entry import Entry, Source
from server.observe.prediction_log.inserts import retried
from server.observe.prediction_log.migrate import prepare
from server.observe.prediction_log.rows import rows_of
from server.observe.prediction_log.schema import predictions
from server.observe.prediction_log.writer import PredictionLog

SHARED = "postgresql://postgres@127.0.0.1:5432"
NAMES = ("a", "b")


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh database of this test's own on the machine's PostgreSQL, dropped afterwards."""
    name = f"rs_writer_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{SHARED}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(f"{SHARED}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _entry(
    request_id: str, answer: list[str] | None = None, class_names: tuple[str, ...] = ("no", "yes")
) -> Entry:
    features = np.array([[1.0, 2.0]])
    prediction = Prediction(np.array([1]), np.array(["yes"], dtype=object), np.array([[0.25, 0.75]]))
    return Entry(
        logged_at=time.time(),
        request_id=request_id,
        route="/predict",
        source=Source(
            model_name="m", version="1", variant="champion", feature_names=NAMES, class_names=class_names
        ),
        features=features,
        answer=prediction if answer is None else answer,
        latency_ms=1.0,
        caller="svc",
    )


def _counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _drain(log: PredictionLog) -> None:
    """Run the writer until its queue is empty, then stop it as a server does."""

    async def until_empty() -> None:
        task = asyncio.get_running_loop().create_task(log.run())
        deadline = time.monotonic() + 30
        while log.waiting_rows:
            assert time.monotonic() < deadline, "the queue never emptied"
            await asyncio.sleep(0.02)
        task.cancel()
        await log.flush(timeout=5.0)

    asyncio.run(until_empty())


def _request_ids(url: str) -> list[str]:
    engine = open_engine(url)
    try:
        with engine.connect() as connection:
            query = sa.select(predictions.c.request_id).order_by(predictions.c.id)
            return list(connection.execute(query).scalars())
    finally:
        engine.dispose()


def _log(url: str, queue_rows: int = 100) -> tuple[PredictionLog, ThreadPoolExecutor]:
    engine = open_engine(url)
    prepare(engine, migrate=True)
    thread = ThreadPoolExecutor(max_workers=1)
    return PredictionLog(engine, thread, queue_rows=queue_rows, sample=1.0, retention_days=0), thread


def test_rows_beyond_the_queue_bound_are_dropped_and_counted(database_url: str) -> None:
    log, thread = _log(database_url, queue_rows=3)
    dropped = _counter("prediction_log_dropped_total", reason="queue_full")
    written = _counter("prediction_log_written_total")
    for i in range(5):
        log.offer(_entry(f"r{i}"))
    assert log.waiting_rows == 3
    _drain(log)
    thread.shutdown()
    log.engine.dispose()
    assert _request_ids(database_url) == ["r0", "r1", "r2"]
    assert _counter("prediction_log_dropped_total", reason="queue_full") - dropped == 2
    assert _counter("prediction_log_written_total") - written == 3


def test_a_row_the_database_refuses_is_dropped_and_the_rest_of_its_batch_written(database_url: str) -> None:
    log, thread = _log(database_url)
    rejected = _counter("prediction_log_dropped_total", reason="rejected")
    log.offer(_entry("before"))
    log.offer(_entry("x" * 200))  # longer than its column: PostgreSQL will never take it
    log.offer(_entry("after"))
    _drain(log)
    thread.shutdown()
    log.engine.dispose()
    assert _request_ids(database_url) == ["before", "after"]
    assert _counter("prediction_log_dropped_total", reason="rejected") - rejected == 1


def test_an_entry_that_cannot_become_rows_is_counted_and_never_raises(database_url: str) -> None:
    log, thread = _log(database_url)
    rejected = _counter("prediction_log_dropped_total", reason="rejected")
    # A class name no JSON encoder takes (a lone surrogate, from a model's metadata).
    log.offer(_entry("unencodable", class_names=("no", "\ud800")))
    log.offer(_entry("after"))
    _drain(log)
    thread.shutdown()
    log.engine.dispose()
    assert _request_ids(database_url) == ["after"]
    assert _counter("prediction_log_dropped_total", reason="rejected") - rejected == 1


def test_text_postgresql_cannot_hold_is_made_storable(database_url: str) -> None:
    log, thread = _log(database_url)
    log.offer(_entry("nul", answer=["a\x00b"]))
    log.offer(_entry("surrogate", answer=["c\ud800d"]))
    _drain(log)
    thread.shutdown()
    engine = log.engine
    with engine.connect() as connection:
        query = sa.select(predictions.c.predicted_class).order_by(predictions.c.id)
        stored = list(connection.execute(query).scalars())
    engine.dispose()
    assert stored == ["a\ufffdb", "c?d"]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (sa.exc.OperationalError("INSERT", {}, Exception("connection refused")), True),
        (sa.exc.InternalError("INSERT", {}, Exception("read-only transaction")), True),
        (sa.exc.ProgrammingError("INSERT", {}, Exception("relation does not exist")), True),
        (sa.exc.DataError("INSERT", {}, Exception("value too long")), False),
        (sa.exc.IntegrityError("INSERT", {}, Exception("check constraint")), False),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), False),
        (psycopg.errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"), True),
        (psycopg.errors.StringDataRightTruncation("value too long"), False),
        (psycopg.errors.UniqueViolation("duplicate key"), False),
        (sqlite3.OperationalError("database is locked"), True),
    ],
    ids=[
        "unreachable",
        "read-only",
        "table-gone",
        "data",
        "constraint",
        "unencodable",
        "pg-read-only",
        "pg-too-long",
        "pg-duplicate",
        "sqlite-locked",
    ],
)
def test_failures_a_later_try_may_not_meet_are_retried_and_refusals_are_not(
    error: BaseException, expected: bool
) -> None:
    assert retried(error, (psycopg.Error, sqlite3.Error)) is expected


def test_what_waits_at_shutdown_with_the_database_gone_is_counted() -> None:
    engine = open_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing")
    thread = ThreadPoolExecutor(max_workers=1)
    log = PredictionLog(engine, thread, queue_rows=100, sample=1.0, retention_days=0)
    shutdown = _counter("prediction_log_dropped_total", reason="shutdown")
    for i in range(4):
        log.offer(_entry(f"r{i}"))
    asyncio.run(log.flush(timeout=2.0))
    thread.shutdown()
    engine.dispose()
    assert log.waiting_rows == 0
    assert _counter("prediction_log_dropped_total", reason="shutdown") - shutdown == 4


def test_sampling_keeps_about_its_share() -> None:
    chances = iter([0.1, 0.6, 0.3, 0.9])
    log = PredictionLog(
        open_engine("sqlite://"),
        None,
        queue_rows=1,
        sample=0.5,
        retention_days=0,
        chance=lambda: next(chances),
    )  # type: ignore[arg-type]
    assert [log.sampled() for _ in range(4)] == [True, False, True, False]


@pytest.fixture(params=["postgresql", "sqlite"])
def any_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database of each kind the log writes in its own way (COPY text, multi-row INSERT)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'predictions.db'}"
        return
    yield request.getfixturevalue("database_url")


def test_a_batch_written_again_after_a_lost_acknowledgement_is_not_written_twice(
    any_database_url: str,
) -> None:
    engine = open_engine(any_database_url)
    prepare(engine, migrate=True)
    form = inserts.row_format_for(engine)
    first, _ = rows_of([(i, _entry(f"r{i}")) for i in range(3)], "p", form)
    inserts.insert(engine, first)
    # The retry holds the committed rows and the ones offered since.
    again, _ = rows_of([(i, _entry(f"r{i}")) for i in range(5)], "p", form)
    inserts.insert(engine, again)
    engine.dispose()
    assert _request_ids(any_database_url) == ["r0", "r1", "r2", "r3", "r4"]


def test_text_with_the_characters_each_insert_format_escapes_is_stored_as_it_was(
    any_database_url: str,
) -> None:
    awkward = 'back\\slash\ttab\nnew\rline \\N "quoted"'
    names = (awkward, "plain")
    entry = Entry(
        logged_at=time.time(),
        request_id="awkward",
        route="/predict",
        source=Source(
            model_name=awkward, version="\\N", variant="champion", feature_names=names, class_names=names
        ),
        features=np.array([[0.5, -1e-300]]),
        answer=Prediction(np.array([0]), np.array([awkward], dtype=object), np.array([[0.25, 0.75]])),
        latency_ms=1.5,
        caller=awkward,
    )
    log, thread = _log(any_database_url)
    log.offer(entry)
    _drain(log)
    thread.shutdown()
    with log.engine.connect() as connection:
        row = connection.execute(sa.select(predictions)).one()._mapping
    log.engine.dispose()
    assert (row["model_name"], row["model_version"], row["predicted_class"], row["caller"]) == (
        awkward,
        "\\N",
        awkward,
        awkward,
    )
    assert row["features"] == {awkward: 0.5, "plain": -1e-300}
    assert row["probabilities"] == {awkward: 0.25, "plain": 0.75}
    assert row["latency_ms"] == 1.5
