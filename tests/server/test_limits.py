"""Rate limits (token buckets, in process and shared through Redis), admission control and the
per-request timeout."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.edge.access import AdmissionMiddleware
from server.edge.auth import digest
from server.edge.rate_limit import LocalTokenBuckets, RedisTokenBuckets
from server.live.loaded_model import LoadedModel
from server.live.model_store import ModelStore
from server.settings import ServerSettings
from tests.server.conftest import record

REDIS = "redis://127.0.0.1:6379/0"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    buckets = LocalTokenBuckets(rate=2.0, burst=3, clock=clock)
    decisions = [asyncio.run(buckets.acquire("a")) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[-1].retry_after == pytest.approx(0.5)
    assert asyncio.run(buckets.acquire("b")).allowed  # every caller has its own bucket
    clock.now += 0.5
    assert asyncio.run(buckets.acquire("a")).allowed
    assert not asyncio.run(buckets.acquire("a")).allowed


def _limited(settings: ServerSettings, model: LoadedModel, **options: object) -> TestClient:
    limited = ServerSettings(
        model_uri=settings.model_uri, mlflow_tracking_uri=settings.mlflow_tracking_uri, **options
    )
    return TestClient(create_app(limited, store=ModelStore(model)), raise_server_exceptions=False)


def test_over_the_limit_is_429_with_retry_after(
    settings: ServerSettings, loaded_champion: LoadedModel, dataset: pd.DataFrame
) -> None:
    with _limited(settings, loaded_champion, rate_limit_per_second=1, rate_limit_burst=2) as client:
        statuses = [client.post("/predict", json=record(dataset)).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        refused = client.post("/predict", json=record(dataset))
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error_code"] == "RATE_LIMITED"
        assert client.get("/health").status_code == 200  # health checks are never limited


def test_limits_are_per_api_key(
    settings: ServerSettings, loaded_champion: LoadedModel, dataset: pd.DataFrame
) -> None:
    keys = f"a:{digest('key-a-123')}:predict,b:{digest('key-b-456')}:predict"
    options = {"rate_limit_per_second": 1, "rate_limit_burst": 1, "auth_enabled": True, "api_keys": keys}
    with _limited(settings, loaded_champion, **options) as client:
        first = client.post("/predict", json=record(dataset), headers={"X-API-Key": "key-a-123"})
        again = client.post("/predict", json=record(dataset), headers={"X-API-Key": "key-a-123"})
        other = client.post("/predict", json=record(dataset), headers={"X-API-Key": "key-b-456"})
        assert (first.status_code, again.status_code, other.status_code) == (200, 429, 200)


def test_redis_shares_one_bucket_between_replicas() -> None:
    prefix = f"test:{uuid.uuid4().hex}:"

    async def scenario() -> list[bool]:
        one = RedisTokenBuckets(REDIS, rate=0.5, burst=3, prefix=prefix)
        two = RedisTokenBuckets(REDIS, rate=0.5, burst=3, prefix=prefix)
        try:
            answers = [await replica.acquire("caller") for replica in (one, two, one, two)]
        finally:
            await one.close()
            await two.close()
        assert answers[-1].retry_after == pytest.approx(2.0, abs=0.2)
        return [a.allowed for a in answers]

    assert asyncio.run(scenario()) == [True, True, True, False]


def test_an_unreachable_redis_lets_requests_through(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> bool:
        limiter = RedisTokenBuckets("redis://127.0.0.1:9/0", rate=1, burst=1)
        try:
            return all([(await limiter.acquire("c")).allowed for _ in range(3)])
        finally:
            await limiter.close()

    assert asyncio.run(scenario())
    assert caplog.text.count("not enforced: Redis is unreachable") == 1


def test_redis_limits_in_the_app(
    settings: ServerSettings, loaded_champion: LoadedModel, dataset: pd.DataFrame
) -> None:
    options = {"rate_limit_per_second": 1, "rate_limit_burst": 1, "rate_limit_redis_url": REDIS}
    with _limited(settings, loaded_champion, **options) as client:
        statuses = [client.post("/predict", json=record(dataset)).status_code for _ in range(2)]
    assert statuses == [200, 429]


async def _slow_app(scope, receive, send) -> None:
    await asyncio.sleep(0.2)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})


def _asgi_client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def test_a_full_house_is_refused_at_once_with_503() -> None:
    admission = AdmissionMiddleware(_slow_app, max_concurrent=2, timeout=5)

    async def scenario() -> list[httpx.Response]:
        async with _asgi_client(admission) as client:
            return await asyncio.gather(*(client.post("/predict") for _ in range(3)))

    responses = asyncio.run(scenario())
    assert sorted(r.status_code for r in responses) == [200, 200, 503]
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error_code"] == "OVERLOADED"


def test_a_slow_request_times_out_with_504() -> None:
    admission = AdmissionMiddleware(_slow_app, max_concurrent=10, timeout=0.1)

    async def scenario() -> httpx.Response:
        async with _asgi_client(admission) as client:
            return await client.post("/predict")

    response = asyncio.run(scenario())
    assert response.status_code == 504
    assert response.json()["error_code"] == "TIMEOUT"
    assert response.json()["message"] == "no answer within 0.1 s"


def test_admission_ignores_everything_but_predictions() -> None:
    admission = AdmissionMiddleware(_slow_app, max_concurrent=1, timeout=0.05)

    async def scenario() -> httpx.Response:
        async with _asgi_client(admission) as client:
            return await client.get("/model/metadata")

    assert asyncio.run(scenario()).status_code == 200
