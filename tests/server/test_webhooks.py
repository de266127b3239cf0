"""Webhook deliveries: MLflow's HMAC signature, freshness and replay checks, alias events, and
the ledgers that remember delivery ids (in memory, in a folder the workers share, in Redis)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.live.delivery_ledger import (
    DeliveryLedger,
    FolderLedger,
    LedgerUnavailable,
    MemoryLedger,
    RedisLedger,
    entry_name,
    retention_seconds,
)
from server.live.loaded_model import LoadedModel
from server.live.model_store import ModelStore
from server.live.webhooks import (
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AliasEvent,
    DeliveryVerifier,
    WebhookRejected,
    alias_event,
    sign,
)
from server.settings import ServerSettings

SECRET = "webhook-secret"
NOW = 1_800_000_000.0
REDIS = "redis://127.0.0.1:6379/0"
UNREACHABLE_REDIS = "redis://127.0.0.1:9/0"
BODY = json.dumps(
    {"entity": "model_version_alias", "action": "created", "timestamp": "…",
     "data": {"name": "m", "alias": "champion", "version": "3"}}
).encode()  # fmt: skip


def _headers(
    body: bytes = BODY, *, secret: str = SECRET, sent: float = NOW, delivery: str = "d-1", timestamp: str = ""
) -> dict[str, str]:
    """Headers as MLflow sends them (or, with `timestamp`, as a sender with that exact text would:
    correctly signed, so only the timestamp's form is at fault)."""
    timestamp = timestamp or str(int(sent))
    return {
        SIGNATURE_HEADER: sign(secret, delivery, timestamp, body),
        TIMESTAMP_HEADER: timestamp,
        DELIVERY_ID_HEADER: delivery,
    }


def _verifier(ledger: DeliveryLedger | None = None) -> DeliveryVerifier:
    return DeliveryVerifier(SECRET, max_age=300, ledger=ledger, clock=lambda: NOW)


def _verify(verifier: DeliveryVerifier, headers: Mapping[str, str], body: bytes = BODY) -> None:
    asyncio.run(verifier.verify(headers, body))


def test_signature_matches_mlflows_own() -> None:
    from mlflow.webhooks.delivery import _generate_hmac_signature

    assert sign(SECRET, "d-1", "123", BODY) == _generate_hmac_signature(SECRET, "d-1", "123", BODY.decode())


def test_a_good_delivery_passes() -> None:
    _verify(_verifier(), _headers())


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        (_headers(secret="other"), BODY, "the signature does not match"),
        (_headers(), BODY + b" ", "the signature does not match"),
        ({**_headers(), SIGNATURE_HEADER: "v1,AAAA"}, BODY, "the signature does not match"),
        ({k: v for k, v in _headers().items() if k != SIGNATURE_HEADER}, BODY, "missing X-MLflow-Signature"),
        (_headers(sent=NOW - 301), BODY, "more than 300 s away from now"),
        (_headers(sent=NOW + 301), BODY, "more than 300 s away from now"),
    ],
    ids=["wrong secret", "altered body", "forged signature", "unsigned", "stale", "from the future"],
)
def test_bad_deliveries_are_rejected(headers: dict[str, str], body: bytes, reason: str) -> None:
    with pytest.raises(WebhookRejected, match=reason):
        _verify(_verifier(), headers, body)


def test_a_replayed_delivery_is_rejected() -> None:
    verifier = _verifier()
    _verify(verifier, _headers())
    with pytest.raises(WebhookRejected, match="already received"):
        _verify(verifier, _headers())
    _verify(verifier, _headers(delivery="d-2"))


# MLflow sends `str(int(time.time()))`. Each of these is signed correctly, so only its form can
# refuse it: "nan" once passed the freshness check (every comparison with NaN is false) and "1.8e9"
# or "1800000000.5" read as NOW; "1e3" was refused only as stale.
ODD_TIMESTAMPS = [
    "nan", "NaN", "inf", "-inf", "Infinity", "1e3", "1.8e9", "1800000000.5", "1800000000.0",
    "+1800000000", "-1800000000", " 1800000000", "1800000000 ", "1_800_000_000", "0x6b49d200",
    "1" * 13, "١٨٠٠٠٠٠٠٠٠",
]  # fmt: skip


@pytest.mark.parametrize("timestamp", ODD_TIMESTAMPS)
def test_a_timestamp_not_in_mlflows_form_is_refused(timestamp: str) -> None:
    """Anything float() reads is not MLflow's form: only decimal digits, as `str(int(time.time()))`."""
    with pytest.raises(WebhookRejected, match="the timestamp is not a Unix time in whole seconds"):
        _verify(_verifier(), _headers(timestamp=timestamp))


@pytest.mark.parametrize("signature", ["v1,\xff\xfe", "v1,é" + "A" * 42, "v1,\u2603"])
def test_a_non_ascii_signature_is_refused_not_an_error(signature: str) -> None:
    """hmac.compare_digest raises TypeError on non-ASCII text: that was an unauthenticated 500."""
    with pytest.raises(WebhookRejected, match="the signature does not match"):
        _verify(_verifier(), {**_headers(), SIGNATURE_HEADER: signature})


def test_a_refused_delivery_claims_nothing() -> None:
    """Only deliveries that pass every other check reach the ledger, so a stranger cannot fill it."""
    ledger = MemoryLedger(retention_seconds(300))
    for headers in (_headers(secret="other"), _headers(timestamp="nan"), _headers(sent=NOW - 301)):
        with pytest.raises(WebhookRejected):
            _verify(_verifier(ledger), headers)
    assert len(ledger) == 0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _claims(ledgers: list[DeliveryLedger], delivery_id: str) -> list[bool]:
    async def scenario() -> list[bool]:
        return [await ledger.claim(delivery_id) for ledger in ledgers]

    return asyncio.run(scenario())


def test_a_memory_ledger_forgets_ids_after_the_retention() -> None:
    clock = Clock(0.0)
    """A single worker's record is bounded too: expired ids leave it as new ones come."""
    ledger = MemoryLedger(retention=10, clock=clock)
    assert _claims([ledger, ledger], "a") == [True, False]
    clock.now = 9.9
    assert _claims([ledger], "a") == [False]
    clock.now = 10.0
    assert _claims([ledger], "b") == [True]
    assert len(ledger) == 1  # "a" expired and was removed


def test_workers_sharing_a_folder_accept_a_delivery_once(tmp_path: Path) -> None:
    """Two ledgers on one folder stand for two worker processes: O_EXCL lets exactly one create."""
    one, two = FolderLedger(tmp_path / "ids", 600), FolderLedger(tmp_path / "ids", 600)
    assert _claims([one, two, one], "delivery-1") == [True, False, False]
    assert _claims([two, one], "delivery-2") == [True, False]
    assert sorted(p.name for p in (tmp_path / "ids").iterdir()) == sorted(
        [entry_name("delivery-1"), entry_name("delivery-2")]
    )


def test_another_worker_refuses_a_replay_for_as_long_as_it_is_fresh(tmp_path: Path) -> None:
    """A delivery stamped 300 s ahead stays fresh until 600 s after it arrived: the shared record
    must outlive that, or a replay late in the window would pass on another worker."""
    clock = Clock(NOW)
    workers = [
        DeliveryVerifier(SECRET, 300, FolderLedger(tmp_path / "ids", retention_seconds(300), clock), clock)
        for _ in range(2)
    ]
    ahead = _headers(sent=NOW + 300)
    _verify(workers[0], ahead)
    for clock.now in (NOW + 1, NOW + 599, NOW + 600):
        with pytest.raises(WebhookRejected, match="already received"):
            _verify(workers[1], ahead)
    clock.now = NOW + 601
    with pytest.raises(WebhookRejected, match="more than 300 s"):
        _verify(workers[1], ahead)


def test_a_folder_ledger_removes_expired_files(tmp_path: Path) -> None:
    """The folder holds only the last retention's deliveries, whatever ran before: disk stays bounded."""
    clock = Clock(time.time())
    ledger = FolderLedger(tmp_path / "ids", retention=600, clock=clock)
    assert _claims([ledger], "old") == [True]
    clock.now += 601  # the next claim sweeps: "old" was created more than 600 s before
    assert _claims([ledger], "new") == [True]
    assert [p.name for p in (tmp_path / "ids").iterdir()] == [entry_name("new")]


def test_odd_delivery_ids_are_safe_file_names(tmp_path: Path) -> None:
    """The id is the sender's text: only its hash names a file, so no id can leave the folder."""
    ledger = FolderLedger(tmp_path / "ids", 600)
    odd = ["../../etc/passwd", "/", "x" * 5000, "é\x00\n", ""]
    assert all(_claims([ledger], delivery_id) == [True] for delivery_id in odd)
    assert len(ledger) == len(odd)
    assert {len(p.name) for p in (tmp_path / "ids").iterdir()} == {64}


def test_an_unusable_folder_refuses_and_logs_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A folder removed under the server (a /tmp cleaner) must not turn into accepting replays."""
    folder = tmp_path / "ids"
    ledger = FolderLedger(folder, 600)
    folder.rmdir()
    for delivery_id in ("a", "b", "c"):
        with pytest.raises(LedgerUnavailable):
            _claims([ledger], delivery_id)
    assert caplog.text.count("webhook deliveries refused") == 1


def test_replicas_sharing_redis_accept_a_delivery_once() -> None:
    """SET NX is atomic on the Redis server: one replica's claim wins, every other one loses."""
    prefix = f"test:{uuid.uuid4().hex}:"

    async def scenario() -> list[bool]:
        one, two = RedisLedger(REDIS, 600, prefix), RedisLedger(REDIS, 600, prefix)
        try:
            return [await ledger.claim("delivery-1") for ledger in (one, two, one, two)]
        finally:
            await one.close()
            await two.close()

    assert asyncio.run(scenario()) == [True, False, False, False]


def test_redis_entries_expire_with_the_retention() -> None:
    """Keys carry their retention as a TTL, so Redis removes them (memory stays bounded)."""
    import redis

    prefix = f"test:{uuid.uuid4().hex}:"

    async def scenario() -> None:
        ledger = RedisLedger(REDIS, 600, prefix)
        try:
            await ledger.claim("delivery-1")
        finally:
            await ledger.close()

    asyncio.run(scenario())
    client = redis.Redis.from_url(REDIS)
    try:
        keys = client.keys(f"{prefix}*")
        assert keys == [(prefix + entry_name("delivery-1")).encode()]
        assert 599_000 < client.pttl(keys[0]) <= 600_000
    finally:
        client.close()


def test_an_unreachable_redis_refuses_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    """Fail closed: without the shared record a replay cannot be told from a first delivery."""

    async def scenario() -> int:
        ledger = RedisLedger(UNREACHABLE_REDIS, 600, "test:")
        refused = 0
        try:
            for delivery_id in ("a", "b", "c"):
                try:
                    await ledger.claim(delivery_id)
                except LedgerUnavailable:
                    refused += 1
        finally:
            await ledger.close()
        return refused

    with caplog.at_level(logging.WARNING):
        assert asyncio.run(scenario()) == 3
    assert caplog.text.count("webhook deliveries refused: Redis is unreachable") == 1


def test_alias_events_are_read() -> None:
    assert alias_event(BODY) == AliasEvent("created", "m", "champion", "3")
    deleted = {
        "entity": "model_version_alias",
        "action": "deleted",
        "data": {"name": "m", "alias": "champion"},
    }
    assert alias_event(json.dumps(deleted).encode()) == AliasEvent("deleted", "m", "champion", None)


def test_other_events_are_not_alias_events() -> None:
    other = {"entity": "model_version", "action": "created", "data": {"name": "m", "version": "4"}}
    assert alias_event(json.dumps(other).encode()) is None


@pytest.fixture
def webhook_app(
    settings: ServerSettings, loaded_champion: LoadedModel, request: pytest.FixtureRequest
) -> Iterator[TestClient]:
    """The app in process with a webhook secret (and, parametrized indirectly, more settings)."""
    options = {"mlflow_webhook_secret": SECRET, **getattr(request, "param", {})}
    configured = ServerSettings(
        model_uri=settings.model_uri, mlflow_tracking_uri=settings.mlflow_tracking_uri, **options
    )
    app = create_app(configured, store=ModelStore(loaded_champion))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _signed(timestamp: str) -> tuple[bytes, dict[str, str]]:
    delivery = uuid.uuid4().hex
    return BODY, {**_headers(delivery=delivery, timestamp=timestamp), "content-type": "application/json"}


@pytest.mark.parametrize("template", ["nan", "inf", "1e3", "{now}.0", "{now}.5", "{now}e0"])
def test_odd_timestamps_are_401_in_the_app(webhook_app: TestClient, template: str) -> None:
    """Fresh but not in MLflow's form ({now}: the current Unix time) is refused as firmly as nan."""
    body, headers = _signed(template.format(now=int(time.time())))
    response = webhook_app.post("/webhooks/mlflow", content=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error_code"] == "INVALID_DELIVERY"
    assert "not a Unix time in whole seconds" in response.json()["message"]


@pytest.mark.parametrize("signature", [b"v1,\xff\xfe", "v1,é".encode("latin-1"), b"\xe2\x98\x83"])
def test_a_non_ascii_signature_header_is_401_not_500(webhook_app: TestClient, signature: bytes) -> None:
    """Raw header bytes reach the app as Latin-1 text: an unauthenticated caller chose them."""
    body, headers = _signed(str(int(time.time())))
    response = webhook_app.post(
        "/webhooks/mlflow", content=body, headers={**headers, SIGNATURE_HEADER: signature}
    )
    assert response.status_code == 401
    assert response.json()["error_code"] == "INVALID_DELIVERY"


@pytest.mark.parametrize("webhook_app", [{"webhook_redis_url": UNREACHABLE_REDIS}], indirect=True)
def test_an_unreachable_redis_ledger_is_503(webhook_app: TestClient) -> None:
    """Refused, not accepted blind: MLflow retries a 503 with the same delivery id and timestamp."""
    body, headers = _signed(str(int(time.time())))
    response = webhook_app.post("/webhooks/mlflow", content=body, headers=headers)
    assert response.status_code == 503
    assert response.json()["error_code"] == "WEBHOOK_LEDGER_UNAVAILABLE"
    assert set(response.json()) == {"error_code", "message", "request_id"}
