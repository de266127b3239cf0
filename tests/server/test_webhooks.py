"""Webhook deliveries: MLflow's HMAC signature, freshness and replay checks, alias events."""

from __future__ import annotations

import json

import pytest

from server.webhooks import (
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AliasEvent,
    DeliveryVerifier,
    WebhookRejected,
    alias_event,
    sign,
)

SECRET = "webhook-secret"
NOW = 1_800_000_000.0
BODY = json.dumps(
    {"entity": "model_version_alias", "action": "created", "timestamp": "…",
     "data": {"name": "m", "alias": "champion", "version": "3"}}
).encode()  # fmt: skip


def _headers(
    body: bytes = BODY, *, secret: str = SECRET, sent: float = NOW, delivery: str = "d-1"
) -> dict[str, str]:
    timestamp = str(int(sent))
    return {
        SIGNATURE_HEADER: sign(secret, delivery, timestamp, body),
        TIMESTAMP_HEADER: timestamp,
        DELIVERY_ID_HEADER: delivery,
    }


def _verifier() -> DeliveryVerifier:
    return DeliveryVerifier(SECRET, max_age=300, clock=lambda: NOW)


def test_signature_matches_mlflows_own() -> None:
    from mlflow.webhooks.delivery import _generate_hmac_signature

    assert sign(SECRET, "d-1", "123", BODY) == _generate_hmac_signature(SECRET, "d-1", "123", BODY.decode())


def test_a_good_delivery_passes() -> None:
    _verifier().verify(_headers(), BODY)


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
        _verifier().verify(headers, body)


def test_a_replayed_delivery_is_rejected() -> None:
    verifier = _verifier()
    verifier.verify(_headers(), BODY)
    with pytest.raises(WebhookRejected, match="already received"):
        verifier.verify(_headers(), BODY)
    verifier.verify(_headers(delivery="d-2"), BODY)


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
