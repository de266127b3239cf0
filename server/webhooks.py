"""MLflow 3 webhook deliveries: verifying their signature and reading what happened.

MLflow signs `"{delivery_id}.{timestamp}.{body}"` with HMAC-SHA256 under the webhook's secret
and sends `v1,<base64 digest>` in `X-MLflow-Signature`, the Unix time in `X-MLflow-Timestamp` and
a UUID in `X-MLflow-Delivery-Id`. A delivery is accepted only with a valid signature, a timestamp
within `max_age` of now, and a delivery id not seen before (a replayed delivery is refused).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

SIGNATURE_HEADER = "x-mlflow-signature"
TIMESTAMP_HEADER = "x-mlflow-timestamp"
DELIVERY_ID_HEADER = "x-mlflow-delivery-id"
SIGNATURE_VERSION = "v1"
ALIAS_ENTITY = "model_version_alias"


class WebhookRejected(Exception):
    """The delivery is not from our MLflow, or not fresh; the message says which check failed."""


@dataclass(frozen=True)
class AliasEvent:
    """An alias was set (`created`) or removed (`deleted`) on a registered model."""

    action: str
    name: str
    alias: str
    version: str | None


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The signature MLflow sends for this delivery (also used by the tests to act as MLflow)."""
    content = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


class DeliveryVerifier:
    """Checks signature, freshness and uniqueness of deliveries."""

    def __init__(self, secret: str, max_age: float, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self._max_age = max_age
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        signature = headers.get(SIGNATURE_HEADER)
        timestamp = headers.get(TIMESTAMP_HEADER)
        delivery_id = headers.get(DELIVERY_ID_HEADER)
        if not signature or not timestamp or not delivery_id:
            raise WebhookRejected("missing X-MLflow-Signature, X-MLflow-Timestamp or X-MLflow-Delivery-Id")
        if not hmac.compare_digest(sign(self._secret, delivery_id, timestamp, body), signature):
            raise WebhookRejected("the signature does not match")
        try:
            sent = float(timestamp)
        except ValueError:
            raise WebhookRejected("the timestamp is not a number") from None
        now = self._clock()
        if abs(now - sent) > self._max_age:
            raise WebhookRejected(f"the timestamp is more than {self._max_age:.0f} s away from now")
        self._forget_before(now - self._max_age)
        if delivery_id in self._seen:
            raise WebhookRejected("this delivery was already received")
        self._seen[delivery_id] = sent

    def _forget_before(self, cutoff: float) -> None:
        while self._seen and next(iter(self._seen.values())) < cutoff:
            self._seen.popitem(last=False)


def alias_event(body: bytes) -> AliasEvent | None:
    """The alias event in a delivery, or None for any other kind of event."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise WebhookRejected("the body is not JSON") from None
    if not isinstance(payload, dict) or payload.get("entity") != ALIAS_ENTITY:
        return None
    data = payload.get("data")
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("name"), str)
        or not isinstance(data.get("alias"), str)
    ):
        raise WebhookRejected("a model_version_alias event without name and alias")
    version = data.get("version")
    return AliasEvent(
        str(payload.get("action")), data["name"], data["alias"], None if version is None else str(version)
    )
