"""MLflow 3 webhook deliveries: verifying their signature and reading what happened.

MLflow signs `"{delivery_id}.{timestamp}.{body}"` with HMAC-SHA256 under the webhook's secret
and sends `v1,<base64 digest>` in `X-MLflow-Signature`, the Unix time in whole seconds
(`str(int(time.time()))`) in `X-MLflow-Timestamp` and a UUID in `X-MLflow-Delivery-Id`. A delivery
is accepted only with a valid signature, a timestamp of that form within `max_age` of now, and a
delivery id the ledger has not seen (`server.live.delivery_ledger`: shared by every worker, and by
every replica with Redis), so a replayed delivery is refused wherever it lands.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from server.live.delivery_ledger import DeliveryLedger, MemoryLedger, retention_seconds

SIGNATURE_HEADER = "x-mlflow-signature"
TIMESTAMP_HEADER = "x-mlflow-timestamp"
DELIVERY_ID_HEADER = "x-mlflow-delivery-id"
SIGNATURE_VERSION = "v1"
ALIAS_ENTITY = "model_version_alias"
# What MLflow sends: `str(int(time.time()))`. Twelve digits reach the year 33658; more cannot be a
# Unix time (and a float's "nan", "inf" or "1e3" is never what MLflow sends).
UNIX_SECONDS = re.compile(r"[0-9]{1,12}")


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
    """Checks signature, freshness and uniqueness of deliveries.

    `ledger` remembers the delivery ids already accepted; by default this process's memory only.
    """

    def __init__(
        self,
        secret: str,
        max_age: float,
        ledger: DeliveryLedger | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._max_age = max_age
        self.ledger = ledger if ledger is not None else MemoryLedger(retention_seconds(max_age))
        self._clock = clock

    async def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Return if the delivery is authentic, fresh and new (claiming its id), else raise
        WebhookRejected; LedgerUnavailable when the ledger cannot tell whether it is new."""
        self.check(headers, body)
        if not await self.ledger.claim(headers[DELIVERY_ID_HEADER]):
            raise WebhookRejected("this delivery was already received")

    def check(self, headers: Mapping[str, str], body: bytes) -> None:
        """Signature and freshness, without claiming the delivery id."""
        signature = headers.get(SIGNATURE_HEADER)
        timestamp = headers.get(TIMESTAMP_HEADER)
        delivery_id = headers.get(DELIVERY_ID_HEADER)
        if not signature or not timestamp or not delivery_id:
            raise WebhookRejected("missing X-MLflow-Signature, X-MLflow-Timestamp or X-MLflow-Delivery-Id")
        if not UNIX_SECONDS.fullmatch(timestamp):
            raise WebhookRejected("the timestamp is not a Unix time in whole seconds (decimal digits)")
        # Header values arrive as Latin-1 text; compare_digest refuses non-ASCII str, so compare bytes.
        if not signature.isascii():
            raise WebhookRejected("the signature does not match")
        expected = sign(self._secret, delivery_id, timestamp, body).encode("ascii")
        if not hmac.compare_digest(expected, signature.encode("ascii")):
            raise WebhookRejected("the signature does not match")
        if abs(self._clock() - int(timestamp)) > self._max_age:
            raise WebhookRejected(f"the timestamp is more than {self._max_age:.0f} s away from now")

    async def close(self) -> None:
        await self.ledger.close()


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
