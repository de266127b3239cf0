"""Live drift from the prediction log: inputs shifted on three features raise exactly those
features' PSI above 0.2 (others stay under 0.1), on GET /model/drift and as gauges; the window
slides by rows and by time with running counts that match a count from scratch; a version without
a reference profile says so."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from model_wrapper.reference_profile import ReferenceProfile, psi
from server.app import create_app
from server.live.loaded_model import LoadedModel
from server.live.model_store import ModelStore
from server.observe.drift import DriftMonitor, ServedVersion, VersionWindow
from server.observe.prediction_log.database import open_engine
from server.observe.prediction_log.migrate import prepare
from server.observe.prediction_log.queries import NewRows
from server.observe.prediction_log.schema import predictions
from server.settings import ServerSettings
from tests.server.metrics_text import sample

SHIFTED = ("feature_1", "feature_2", "feature_3")


def _app(settings: ServerSettings, model: LoadedModel, tmp_path: Path) -> FastAPI:
    values = settings.model_dump()
    values.update(prediction_log_url=f"sqlite:///{tmp_path / 'predictions.db'}", drift_min_rows=100)
    return create_app(ServerSettings(**values), store=ModelStore(model))


@pytest.fixture
def drift_client(
    settings: ServerSettings, loaded_champion: LoadedModel, tmp_path: Path
) -> Iterator[TestClient]:
    with TestClient(_app(settings, loaded_champion, tmp_path), raise_server_exceptions=False) as client:
        yield client


def _send(client: TestClient, frame: pd.DataFrame) -> int:
    records = frame.to_dict(orient="records")
    for start in range(0, len(records), 50):
        answer = client.post("/batch-predict", json={"records": records[start : start + 50]})
        assert answer.status_code == 200, answer.text
    return len(records)


def _refreshed(client: TestClient, rows: int) -> dict:
    """GET /model/drift once every row sent is written and read (the refresh is run here, not
    waited for)."""
    services = client.app.state.services  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    while services.monitoring.log.waiting_rows:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    services.monitoring.drift.refresh()
    report = client.get("/model/drift").json()
    assert report["versions"][0]["rows"] == rows
    return report


def test_shifted_features_drift_and_the_others_do_not(
    drift_client: TestClient, dataset: pd.DataFrame
) -> None:
    shifted = dataset.copy()
    for name in SHIFTED:
        shifted[name] = shifted[name] + 3 * dataset[name].std()
    rows = _send(drift_client, shifted)
    report = _refreshed(drift_client, rows)
    version = report["versions"][0]
    assert (version["status"], version["variant"]) == ("ok", "champion")
    by_name = {f["name"]: f for f in version["features"]}
    assert sorted(name for name, f in by_name.items() if f["psi"] > 0.2) == list(SHIFTED)
    assert max(f["psi"] for name, f in by_name.items() if name not in SHIFTED) < 0.1
    assert all(by_name[name]["ks"] > 0.5 for name in SHIFTED)
    exposition = drift_client.get("/metrics").text
    for name in SHIFTED:
        assert sample(
            exposition, "feature_drift_psi", feature=name, version=version["version"]
        ) == pytest.approx(by_name[name]["psi"])
    assert sample(exposition, "feature_drift_psi", feature="feature_10", version=version["version"]) < 0.1
    assert sample(exposition, "drift_window_rows", version=version["version"]) == rows


def test_the_class_mix_is_compared_with_training(drift_client: TestClient, dataset: pd.DataFrame) -> None:
    rows = _send(drift_client, dataset)
    version = _refreshed(drift_client, rows)["versions"][0]
    classes = {c["class"]: c for c in version["classes"]}
    assert set(classes) == {"malignant", "benign"}
    assert sum(c["live_share"] for c in classes.values()) == pytest.approx(1.0)
    for item in classes.values():
        assert item["ratio"] == pytest.approx(item["live_share"] / item["training_share"])
        assert 0.8 < item["ratio"] < 1.2  # the whole data set predicted: close to the training mix


def test_too_few_rows_are_still_collecting(drift_client: TestClient, dataset: pd.DataFrame) -> None:
    rows = _send(drift_client, dataset.head(50))
    version = _refreshed(drift_client, rows)["versions"][0]
    assert version["status"] == "collecting"
    assert version["reason"] == "50 rows in the window; drift is given from 100"
    assert "features" not in version or version["features"] is None


def test_a_version_without_a_profile_says_so(
    settings: ServerSettings, loaded_champion: LoadedModel, tmp_path: Path
) -> None:
    bare = dataclasses.replace(loaded_champion, reference_profile=None, reference_problem="its run has none")
    with TestClient(_app(settings, bare, tmp_path)) as client:
        client.app.state.services.monitoring.drift.refresh()  # type: ignore[attr-defined]
        version = client.get("/model/drift").json()["versions"][0]
    assert (version["status"], version["reason"]) == ("no_reference_profile", "its run has none")


def _profile() -> ReferenceProfile:
    rng = np.random.default_rng(7)
    return ReferenceProfile.build(
        rng.normal(size=(2000, 2)), ["a", "b"], rng.integers(0, 2, 2000), ["no", "yes"]
    )


def _rows(start_id: int, values: np.ndarray, at: datetime) -> NewRows:
    ids = list(range(start_id, start_id + len(values)))
    return NewRows(
        ids,
        [at] * len(values),
        [{"a": float(a), "b": float(b)} for a, b in values],
        ["yes"] * len(values),
    )


def test_the_window_slides_by_rows_with_counts_as_from_scratch() -> None:
    profile = _profile()
    window = VersionWindow(profile, max_rows=300, max_seconds=3600)
    rng = np.random.default_rng(1)
    first = rng.normal(size=(250, 2))
    second = rng.normal(loc=2.0, size=(200, 2))
    now = datetime.now(UTC)
    window.add(_rows(1, first, now))
    window.add(_rows(251, second, now))
    window.expire(now.timestamp())
    assert window.rows == 300
    kept = np.concatenate([first, second])[-300:]
    features, _ = window.statistics()
    feature = profile.features[0]
    expected = psi(
        feature.bin_counts, np.bincount(feature.psi_bins(kept[:, 0]), minlength=feature.psi_bin_count)
    )
    assert features[0]["psi"] == pytest.approx(expected)


def test_the_window_forgets_rows_older_than_its_duration() -> None:
    window = VersionWindow(_profile(), max_rows=10_000, max_seconds=60)
    now = datetime.now(UTC)
    rng = np.random.default_rng(2)
    window.add(_rows(1, rng.normal(size=(40, 2)), now - timedelta(seconds=120)))
    window.add(_rows(41, rng.normal(size=(30, 2)), now - timedelta(seconds=10)))
    window.expire(now.timestamp())
    assert window.rows == 30
    assert window.newest_id == 70


def _monitor(
    url: str, profile: ReferenceProfile, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> tuple[DriftMonitor, ThreadPoolExecutor]:
    engine = open_engine(url)
    prepare(engine, migrate=True)
    thread = ThreadPoolExecutor(max_workers=1)
    served = [ServedVersion("m", "1", "champion", profile, None)]
    monitor = DriftMonitor(
        engine, thread, lambda: served, max_rows=1000, max_seconds=3600, min_rows=10, clock=clock
    )
    return monitor, thread


def _insert(url: str, ids: range, values: np.ndarray) -> None:
    engine = open_engine(url)
    now = datetime.now(UTC)
    rows = [
        {
            "id": row_id,
            "row_key": f"k{row_id}",
            "logged_at": now,
            "request_id": "r",
            "row_index": 0,
            "route": "/predict",
            "model_name": "m",
            "model_version": "1",
            "variant": "champion",
            "features": {"a": float(a), "b": float(b)},
            "predicted_class": "yes",
            "latency_ms": 1.0,
        }
        for row_id, (a, b) in zip(ids, values, strict=True)
    ]
    with engine.begin() as connection:
        connection.execute(sa.insert(predictions), rows)
    engine.dispose()


def test_rows_committed_below_ids_already_read_are_counted_once(tmp_path: Path) -> None:
    """Another worker's batch takes its ids when it inserts and shows when it commits: rows may
    appear below ids drift has read. They are counted once they show, and nothing twice."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    monitor, thread = _monitor(url, _profile())
    rng = np.random.default_rng(3)
    _insert(url, range(201, 251), rng.normal(size=(50, 2)))
    monitor.refresh()
    assert monitor.report()["versions"][0]["rows"] == 50
    _insert(url, range(101, 131), rng.normal(size=(30, 2)))  # committed late, below the ids read
    monitor.refresh()
    monitor.refresh()
    assert monitor.report()["versions"][0]["rows"] == 80
    thread.shutdown()


def test_a_window_grown_too_thin_sets_its_numbers_to_nan(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    clock = [datetime.now(UTC)]
    monitor, thread = _monitor(url, _profile(), clock=lambda: clock[0])
    _insert(url, range(1, 21), np.random.default_rng(4).normal(size=(20, 2)))
    monitor.refresh()
    assert sample(generate_latest().decode(), "feature_drift_psi", feature="a", version="1") >= 0
    clock[0] += timedelta(hours=2)
    monitor.refresh()
    version = monitor.report()["versions"][0]
    assert (version["status"], version["rows"]) == ("collecting", 0)
    assert math.isnan(sample(generate_latest().decode(), "feature_drift_psi", feature="a", version="1"))
    thread.shutdown()
