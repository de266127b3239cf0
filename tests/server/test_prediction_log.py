"""The prediction log in-process, on SQLite: every answered request becomes rows with the right
version, variant, features and answer; GET /predictions reads them back; retention deletes by age;
the schema is managed by its migrations. (Against PostgreSQL, with the database stopped under
load: tests/e2e/test_prediction_log.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi import FastAPI
from fastapi.testclient import TestClient

from server.app import create_app
from server.live.loaded_model import LoadedModel
from server.live.model_store import ModelStore
from server.observe.prediction_log.database import open_engine
from server.observe.prediction_log.migrate import VERSION_TABLE, SchemaNotCurrent, head_revision, prepare
from server.observe.prediction_log.schema import metadata, predictions
from server.settings import ServerSettings
from tests.server.conftest import record
from tests.server.metrics_text import sample


def _log_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'log' / 'predictions.db'}"


@pytest.fixture
def log_url(tmp_path: Path) -> str:
    return _log_url(tmp_path)


@pytest.fixture
def log_client(settings: ServerSettings, loaded_champion: LoadedModel, log_url: str) -> Iterator[TestClient]:
    logged = settings.model_copy(update={"prediction_log_url": log_url})
    app: FastAPI = create_app(ServerSettings(**_fields(logged)), store=ModelStore(loaded_champion))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _fields(settings: ServerSettings) -> dict[str, object]:
    """Settings as constructor arguments (validators run again)."""
    values = settings.model_dump()
    values["prediction_log_url"] = settings.prediction_log_url
    return values


def _rows(url: str) -> list[dict[str, object]]:
    engine = open_engine(url)
    try:
        with engine.connect() as connection:
            return [
                dict(r._mapping)
                for r in connection.execute(sa.select(predictions).order_by(predictions.c.id))
            ]
    finally:
        engine.dispose()


def _wait_rows(url: str, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 30
    while True:
        rows = _rows(url)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_each_answered_record_is_one_row(
    log_client: TestClient, log_url: str, dataset: pd.DataFrame, loaded_champion: LoadedModel
) -> None:
    one = log_client.post("/predict", json=record(dataset, 3), headers={"x-request-id": "req-single"})
    batch = log_client.post(
        "/batch-predict",
        json={"records": [record(dataset, i) for i in (0, 1)]},
        headers={"x-request-id": "req-batch"},
    )
    assert one.status_code == batch.status_code == 200
    rows = _wait_rows(log_url, 3)
    assert [(r["request_id"], r["row_index"], r["route"]) for r in rows] == [
        ("req-single", 0, "/predict"),
        ("req-batch", 0, "/batch-predict"),
        ("req-batch", 1, "/batch-predict"),
    ]
    first = rows[0]
    source = loaded_champion.source
    assert (first["model_name"], first["model_version"], first["variant"]) == (
        source.name,
        source.version,
        "champion",
    )
    assert first["features"] == record(dataset, 3)
    assert first["predicted_class"] == one.json()["label"]
    assert first["probabilities"] == pytest.approx(one.json()["probabilities"])
    assert first["latency_ms"] > 0
    assert first["caller"] is None
    assert [r["predicted_class"] for r in rows[1:]] == [p["label"] for p in batch.json()["predictions"]]


def test_invocations_are_logged_too(log_client: TestClient, log_url: str, dataset: pd.DataFrame) -> None:
    names = list(dataset.columns)
    body = {"dataframe_split": {"columns": names, "data": [list(record(dataset, 5).values())]}}
    assert log_client.post("/invocations", json=body, headers={"x-request-id": "inv-1"}).status_code == 200
    csv = ",".join(names) + "\n" + ",".join(str(v) for v in record(dataset, 6).values()) + "\n"
    answer = log_client.post(
        "/invocations", content=csv, headers={"content-type": "text/csv", "x-request-id": "inv-2"}
    )
    assert answer.status_code == 200
    rows = _wait_rows(log_url, 2)
    assert [(r["request_id"], r["route"]) for r in rows] == [
        ("inv-1", "/invocations"),
        ("inv-2", "/invocations"),
    ]
    assert rows[0]["features"] == record(dataset, 5)
    assert rows[0]["predicted_class"] == log_client.post("/predict", json=record(dataset, 5)).json()["label"]
    # CSV is read by MLflow's own parsers: its rows and classes are logged all the same.
    assert rows[1]["features"] == record(dataset, 6)
    assert rows[1]["predicted_class"] == answer.json()["predictions"][0]["label"]


def test_refused_requests_are_not_logged(log_client: TestClient, log_url: str, dataset: pd.DataFrame) -> None:
    bad = {**record(dataset), "feature_1": "x"}
    assert log_client.post("/predict", json=bad).status_code == 422
    assert (
        log_client.post("/predict", json=record(dataset), headers={"x-request-id": "ok"}).status_code == 200
    )
    assert [r["request_id"] for r in _wait_rows(log_url, 1)] == ["ok"]


def _written(client: TestClient) -> float:
    return sample(client.get("/metrics").text, "prediction_log_written_total")


def test_written_rows_are_counted(log_client: TestClient, log_url: str, dataset: pd.DataFrame) -> None:
    before = _written(log_client)  # the metrics are the process's: other tests' rows count too
    for i in range(5):
        assert log_client.post("/predict", json=record(dataset, i)).status_code == 200
    _wait_rows(log_url, 5)
    deadline = time.monotonic() + 10
    while _written(log_client) < before + 5:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert _written(log_client) == before + 5


def test_predictions_lists_newest_first_and_pages(
    log_client: TestClient, log_url: str, dataset: pd.DataFrame
) -> None:
    for i in range(3):
        log_client.post("/predict", json=record(dataset, i), headers={"x-request-id": f"page-{i}"})
    _wait_rows(log_url, 3)
    first = log_client.get("/predictions", params={"limit": 2, "since": "1h"})
    assert first.status_code == 200
    body = first.json()
    assert [p["request_id"] for p in body["predictions"]] == ["page-2", "page-1"]
    second = log_client.get(body["next"]).json()
    assert [p["request_id"] for p in second["predictions"]] == ["page-0"]
    assert second["next"] is None
    one = log_client.get("/predictions", params={"request_id": "page-1"}).json()["predictions"]
    assert [(p["request_id"], p["features"]) for p in one] == [("page-1", record(dataset, 1))]


def test_predictions_refuses_a_bad_since(log_client: TestClient) -> None:
    answer = log_client.get("/predictions", params={"since": "yesterday-ish"})
    assert answer.status_code == 400
    assert answer.json()["error_code"] == "BAD_REQUEST"
    assert answer.json()["message"] == "since: expected an ISO 8601 time or a duration such as 15m, 24h or 7d"


def test_without_a_log_the_routes_say_so(client: TestClient) -> None:
    answer = client.get("/predictions")
    assert answer.status_code == 409
    assert answer.json()["error_code"] == "PREDICTION_LOG_OFF"
    drift = client.get("/model/drift").json()
    assert drift["enabled"] is False
    assert drift["versions"] == []


def test_the_migrations_build_exactly_the_declared_schema(log_url: str) -> None:
    engine = open_engine(log_url)
    try:
        assert prepare(engine, migrate=True) == head_revision()
        with engine.connect() as connection:
            assert (
                compare_metadata(
                    MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}), metadata
                )
                == []
            )
    finally:
        engine.dispose()


def test_an_unmigrated_database_is_refused_when_migrating_is_off(log_url: str) -> None:
    engine = open_engine(log_url)
    try:
        with pytest.raises(SchemaNotCurrent) as refused:
            prepare(engine, migrate=False)
    finally:
        engine.dispose()
    assert str(refused.value) == (
        f"the prediction log's database is at schema revision none (empty), this server writes revision "
        f"{head_revision()}, and PREDICTION_LOG_MIGRATE is false: run "
        "`python -m server migrate`, or set PREDICTION_LOG_MIGRATE=true"
    )


def test_retention_deletes_old_rows_in_batches(log_url: str) -> None:
    from server.observe.prediction_log import writer

    engine = open_engine(log_url)
    prepare(engine, migrate=True)
    now = datetime.now(UTC)
    rows = [
        {
            "row_key": f"k{i}",
            "logged_at": now - timedelta(days=40 if i < 12 else 1),
            "request_id": "r",
            "row_index": 0,
            "route": "/predict",
            "variant": "champion",
            "latency_ms": 1.0,
        }
        for i in range(15)
    ]
    with engine.begin() as connection:
        connection.execute(sa.insert(predictions), rows)
    log = writer.PredictionLog(engine, None, queue_rows=10, sample=1.0, retention_days=30)  # type: ignore[arg-type]
    original = writer.RETENTION_BATCH_ROWS
    writer.RETENTION_BATCH_ROWS = 5
    try:
        assert log.delete_expired(now) == 12
    finally:
        writer.RETENTION_BATCH_ROWS = original
    assert [r["row_key"] for r in _rows(log_url)] == ["k12", "k13", "k14"]
    engine.dispose()


def test_a_probability_that_is_not_a_number_is_listed_as_null(log_client: TestClient, log_url: str) -> None:
    """/invocations answers NaN probabilities as MLflow does for inputs far off the training range;
    the log keeps them as null, and GET /predictions lists them."""
    engine = open_engine(log_url)
    row = {
        "row_key": "nan-row",
        "logged_at": datetime.now(UTC),
        "request_id": "nan-probability",
        "row_index": 0,
        "route": "/invocations",
        "variant": "champion",
        "probabilities": {"malignant": float("nan"), "benign": float("nan")},
        "latency_ms": 1.0,
    }
    with engine.begin() as connection:
        connection.execute(sa.insert(predictions), [row])
    engine.dispose()
    answer = log_client.get("/predictions", params={"request_id": "nan-probability"})
    assert answer.status_code == 200
    assert answer.json()["predictions"][0]["probabilities"] == {"malignant": None, "benign": None}


@pytest.mark.parametrize("since", ["999999999h", "0001-01-01T00:00:00+05:00", "tomorrow"])
def test_a_since_out_of_range_is_a_400(log_client: TestClient, since: str) -> None:
    answer = log_client.get("/predictions", params={"since": since})
    assert answer.status_code == 400
    assert answer.json()["message"] == "since: expected an ISO 8601 time or a duration such as 15m, 24h or 7d"


def test_a_database_at_a_newer_schema_revision_is_written_as_it_is(log_url: str) -> None:
    """A deployment rolled back to this server keeps logging: migrations only ever add."""
    engine = open_engine(log_url)
    try:
        prepare(engine, migrate=True)
        with engine.begin() as connection:
            connection.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = 'f00d'"))
        assert prepare(engine, migrate=True) == "f00d"
        assert prepare(engine, migrate=False) == "f00d"
    finally:
        engine.dispose()


def _server(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREDICTION_LOG_", "MLFLOW_", "MODEL_"))}
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_python_m_server_migrate_brings_the_schema_up_as_a_step_of_its_own(log_url: str) -> None:
    done = _server("migrate", env={"PREDICTION_LOG_URL": log_url})
    assert (done.returncode, done.stdout) == (
        0,
        f"the prediction log's schema is at revision {head_revision()}\n",
    )
    engine = open_engine(log_url)
    try:
        assert prepare(engine, migrate=False) == head_revision()  # what PREDICTION_LOG_MIGRATE=false checks
    finally:
        engine.dispose()


def test_python_m_server_migrate_needs_a_log_url() -> None:
    refused = _server("migrate", env={})
    assert (refused.returncode, refused.stderr) == (2, "error: PREDICTION_LOG_URL is not set\n")
    unknown = _server("migrate-everything", env={})
    assert (unknown.returncode, unknown.stderr) == (2, "usage: python -m server [migrate]\n")
