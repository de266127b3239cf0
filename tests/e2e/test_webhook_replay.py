"""A replayed webhook delivery is refused wherever it lands: by every worker of one server (their
shared ledger folder) and by every replica pointed at one Redis; a `nan` timestamp never passes.

The deliveries are signed here with the server's secret, exactly as MLflow signs them, and sent to
real `python -m server` processes. Each request goes over a fresh connection, so with WORKERS=2
the kernel spreads them over both workers' SO_REUSEPORT sockets; the first 16 characters of a
response's X-Request-ID name the worker that answered (a per-process prefix), so the tests keep
sending until both workers have answered instead of hoping they did.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from registry_scripts.processes import ServerProcess, api_process
from server.live.webhooks import DELIVERY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.conftest import DEFAULT_MODEL

SECRET = "e2e-replay-secret"
REDIS = "redis://127.0.0.1:6379/0"
MOST_ATTEMPTS = 200  # a fresh connection lands on either worker; 200 misses in a row do not happen


def _delivery(version: str, timestamp: str | None = None) -> tuple[bytes, dict[str, str]]:
    """A champion alias event as MLflow delivers it: a new delivery id, signed with SECRET."""
    body = json.dumps(
        {
            "entity": "model_version_alias",
            "action": "created",
            "timestamp": "2026-01-01T00:00:00+00:00",
            "data": {"name": DEFAULT_MODEL, "alias": "champion", "version": version},
        }
    ).encode()
    delivery, timestamp = str(uuid.uuid4()), timestamp or str(int(time.time()))
    return body, {
        "content-type": "application/json",
        SIGNATURE_HEADER: sign(SECRET, delivery, timestamp, body),
        TIMESTAMP_HEADER: timestamp,
        DELIVERY_ID_HEADER: delivery,
    }


def _post(url: str, body: bytes, headers: dict[str, str | bytes]) -> httpx.Response:
    """One delivery over a new connection (httpx.post opens and closes its own)."""
    return httpx.post(f"{url}/webhooks/mlflow", content=body, headers=headers, timeout=30)


def _to_every_worker(
    url: str, body: bytes, headers: dict[str, str | bytes], workers: int
) -> list[httpx.Response]:
    """Send the same delivery until each of `workers` workers has answered it at least twice."""
    answers: list[httpx.Response] = []
    by_worker: dict[str, int] = {}
    for _ in range(MOST_ATTEMPTS):
        response = _post(url, body, headers)
        answers.append(response)
        worker = response.headers["x-request-id"][:16]
        by_worker[worker] = by_worker.get(worker, 0) + 1
        if len(by_worker) == workers and min(by_worker.values()) >= 2:
            return answers
    raise AssertionError(f"{MOST_ATTEMPTS} deliveries reached only {len(by_worker)} of {workers} workers")


def _outcomes(answers: list[httpx.Response]) -> list[tuple[int, str]]:
    return [(r.status_code, r.json().get("status") or r.json()["message"]) for r in answers]


@pytest.fixture(scope="module")
def two_workers(
    base_env: dict[str, str], champion_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One `python -m server` with two workers, each on its own SO_REUSEPORT socket."""
    log = tmp_path_factory.mktemp("replay-workers") / "api.log"
    settings = {
        "MODEL_URI": champion_uri,
        "WORKERS": "2",
        "MLFLOW_WEBHOOK_SECRET": SECRET,
        "TAG_LIVE_VERSION": "false",  # leave the shared champion version's tags alone
    }
    with api_process(base_env, log, **settings) as server:
        yield server


def test_the_workers_of_one_server_accept_a_delivery_once(
    two_workers: ServerProcess, champion_version: str
) -> None:
    """Each worker used to keep its own memory of delivery ids, so each accepted the same one."""
    body, headers = _delivery(champion_version)
    answers = _outcomes(_to_every_worker(two_workers.url, body, headers, workers=2))
    assert answers[0] == (202, "accepted")
    assert answers[1:] == [(401, "delivery refused: this delivery was already received")] * (len(answers) - 1)


def test_a_nan_timestamp_is_refused_by_every_worker(
    two_workers: ServerProcess, champion_version: str
) -> None:
    """`nan` passed the freshness check (every comparison with NaN is false), once per worker."""
    body, headers = _delivery(champion_version, timestamp="nan")
    answers = _to_every_worker(two_workers.url, body, headers, workers=2)
    assert set(_outcomes(answers)) == {
        (401, "delivery refused: the timestamp is not a Unix time in whole seconds (decimal digits)")
    }
    assert {r.json()["error_code"] for r in answers} == {"INVALID_DELIVERY"}


def test_a_non_ascii_signature_is_401_not_500(two_workers: ServerProcess, champion_version: str) -> None:
    """hmac.compare_digest raised TypeError on such a header: an unauthenticated 500."""
    body, headers = _delivery(champion_version)
    response = _post(two_workers.url, body, {**headers, SIGNATURE_HEADER: b"v1,\xff\xfe\xe2\x98\x83"})
    assert (response.status_code, response.json()["error_code"]) == (401, "INVALID_DELIVERY")


def test_replicas_sharing_redis_accept_a_delivery_once(
    base_env: dict[str, str], champion_uri: str, champion_version: str, tmp_path: Path
) -> None:
    """Two servers (as two replicas behind one load balancer) with one Redis: the delivery one
    accepted, the other refuses; without Redis each would accept it once."""
    settings = {
        "MODEL_URI": champion_uri,
        "MLFLOW_WEBHOOK_SECRET": SECRET,
        "WEBHOOK_REDIS_URL": REDIS,
        # A fresh key prefix in Redis for this run; no serving tag on the shared champion version.
        "DEPLOYMENT_NAME": f"replay-{uuid.uuid4().hex[:12]}",
        "TAG_LIVE_VERSION": "false",
    }
    with ExitStack() as stack:
        replicas = [
            stack.enter_context(api_process(base_env, tmp_path / f"replica-{i}.log", **settings))
            for i in (1, 2)
        ]
        body, headers = _delivery(champion_version)
        answers = _outcomes([_post(replica.url, body, headers) for _ in range(3) for replica in replicas])
    assert answers[0] == (202, "accepted")
    assert answers[1:] == [(401, "delivery refused: this delivery was already received")] * 5
