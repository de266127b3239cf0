"""README promises about settings and metrics, in process against the real registry: a rate-limit
burst of 0, the `model_reload_seconds` histogram, and polling's backoff cap.

(What only a whole process shows is in tests/e2e/test_documented_behaviour.py.)
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Iterator

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from registry_scripts.processes import free_port
from registry_scripts.tracking_server import TrackingServer
from server.app import create_app
from server.live.follower import MAX_BACKOFF_SECONDS
from server.live.loaded_model import LoadedModel
from server.live.model_store import ModelStore
from server.settings import ServerSettings
from tests.registry import register_ours
from tests.server.conftest import record
from tests.server.metrics_text import counted, sample

# RATE_LIMIT_BURST: "Bucket size (0: one second's worth)".


@pytest.mark.parametrize(("rate", "one_seconds_worth"), [(5.0, 5), (0.5, 1)], ids=["5/s", "0.5/s"])
def test_a_burst_of_zero_lets_one_seconds_worth_through_at_once(
    settings: ServerSettings,
    loaded_champion: LoadedModel,
    dataset: pd.DataFrame,
    rate: float,
    one_seconds_worth: int,
) -> None:
    limited = ServerSettings(
        model_uri=settings.model_uri,
        mlflow_tracking_uri=settings.mlflow_tracking_uri,
        rate_limit_per_second=rate,
        rate_limit_burst=0,
    )
    statuses: list[int] = []
    with TestClient(create_app(limited, store=ModelStore(loaded_champion))) as client:
        started = time.monotonic()
        while 429 not in statuses and len(statuses) < 100:
            statuses.append(client.post("/predict", json=record(dataset)).status_code)
        elapsed = time.monotonic() - started
    allowed = statuses.index(429)
    assert set(statuses[:allowed]) == {200}
    # The bucket refills while the requests run: a slow machine may let a few more through, never
    # fewer than the burst.
    assert one_seconds_worth <= allowed <= one_seconds_worth + math.floor(elapsed * rate)


# `model_reload_seconds`: "Time from deciding to load a version to serving it (or refusing it)".


@pytest.fixture
def following(
    tracking_server: TrackingServer, client_mlflow: MlflowClient
) -> Iterator[tuple[TestClient, str]]:
    """An app following a model of its own (version 1 on @champion), polling off."""
    name = f"reload-seconds-{uuid.uuid4().hex[:8]}"
    register_ours(name)
    client_mlflow.set_registered_model_alias(name, "champion", "1")
    settings = ServerSettings(
        model_uri=f"models:/{name}@champion",
        mlflow_tracking_uri=tracking_server.url,
        model_poll_seconds=0,
        tag_live_version=False,
    )
    with TestClient(create_app(settings)) as client:
        yield client, name


def test_a_swap_is_timed_in_model_reload_seconds(
    following: tuple[TestClient, str], client_mlflow: MlflowClient
) -> None:
    client, name = following
    register_ours(name)
    client_mlflow.set_registered_model_alias(name, "champion", "2")
    before = client.get("/metrics").text
    body = client.post("/model/reload").json()
    after = client.get("/metrics").text
    assert body["outcome"] == "swapped"
    assert sample(after, "model_reload_seconds_count") == counted(before, "model_reload_seconds_count") + 1
    took = sample(after, "model_reload_seconds_sum") - counted(before, "model_reload_seconds_sum")
    assert took > 0
    assert took == pytest.approx(body["seconds"], abs=0.001)  # the answer rounds to milliseconds


# "registry down: polling backs off (up to a minute)".


def test_polling_backs_off_up_to_a_minute(loaded_champion: LoadedModel) -> None:
    """Each failed check doubles the wait before the next; the wait stops growing at a minute. The
    registry here is a port nobody listens on: every check really fails."""
    settings = ServerSettings(
        model_uri="models:/unreachable@champion",
        mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}",
        model_poll_seconds=10,
    )
    services = create_app(settings, store=ModelStore(loaded_champion)).state.services
    follower = services.follower

    async def fail(times: int) -> list[float]:
        waits = []
        for _ in range(times):
            assert (await follower.check()).outcome == "failed"
            waits.append(follower._interval())  # the wait before the next check
        await services.close()
        return waits

    assert follower._interval() == 10
    assert asyncio.run(fail(5)) == [20, 40, MAX_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS]
    assert MAX_BACKOFF_SECONDS == 60
    assert follower.status.reachable is False
