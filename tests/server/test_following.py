"""Following `models:/NAME@ALIAS` in a real registry, in process: polls, webhooks, the gate,
forced reloads, version listings and the serving tags."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from registry_scripts.tracking_server import TrackingServer
from server.app import create_app
from server.live.webhooks import DELIVERY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from server.settings import ServerSettings
from tests.helpers import wait_for
from tests.registry import FEATURES, champion_model, register_29_features, register_broken, register_ours
from tests.server.conftest import record
from tests.server.metrics_text import counted, sample

SECRET = "following-secret"


@pytest.fixture
def model_name(client_mlflow: MlflowClient) -> str:
    return champion_model(client_mlflow, "follow")


def _app(tracking_server: TrackingServer, name: str, **settings: object) -> TestClient:
    options = {"model_poll_seconds": 0.2, "mlflow_webhook_secret": SECRET} | settings
    return TestClient(
        create_app(
            ServerSettings(
                model_uri=f"models:/{name}@champion", mlflow_tracking_uri=tracking_server.url, **options
            )
        )
    )


@pytest.fixture
def follower_client(tracking_server: TrackingServer, model_name: str) -> Iterator[TestClient]:
    with _app(tracking_server, model_name) as client:
        yield client


def _version(client: TestClient) -> str:
    return client.get("/health").json()["model_version"]


def test_a_promotion_goes_live_within_the_poll_interval(
    follower_client: TestClient, model_name: str, client_mlflow: MlflowClient
) -> None:
    assert _version(follower_client) == "1"
    register_ours(model_name, "random_forest")
    client_mlflow.set_registered_model_alias(model_name, "champion", "2")  # as the MLflow UI does
    wait_for(lambda: _version(follower_client) == "2", what="version 2 live")
    assert follower_client.post("/predict", json=record(FEATURES)).headers["x-model-version"] == "2"


def test_the_live_version_is_tagged_and_the_replaced_one_untagged(
    follower_client: TestClient, model_name: str, client_mlflow: MlflowClient
) -> None:
    wait_for(
        lambda: "serving.default" in client_mlflow.get_model_version(model_name, "1").tags, what="v1 tagged"
    )
    assert client_mlflow.get_model_version(model_name, "1").tags["serving.default"].startswith("live since ")
    register_ours(model_name)
    client_mlflow.set_registered_model_alias(model_name, "champion", "2")
    wait_for(
        lambda: "serving.default" in client_mlflow.get_model_version(model_name, "2").tags, what="v2 tagged"
    )
    wait_for(
        lambda: "serving.default" not in client_mlflow.get_model_version(model_name, "1").tags,
        what="v1 untagged",
    )


def _failures(client: TestClient) -> float:
    return counted(client.get("/metrics").text, "model_reload_failures_total", variant="champion")


def test_a_29_feature_version_is_refused_and_the_last_good_one_keeps_serving(
    follower_client: TestClient, model_name: str, client_mlflow: MlflowClient
) -> None:
    failures = _failures(follower_client)
    # No refusal yet in this app's process, perhaps: the outcome's child may not exist.
    refusals = counted(
        follower_client.get("/metrics").text, "model_reloads_total", outcome="refused", variant="champion"
    )
    register_29_features(model_name)
    client_mlflow.set_registered_model_alias(model_name, "champion", "2")
    wait_for(
        lambda: follower_client.get("/model/metadata").json()["last_reload_error"] is not None, what="refusal"
    )
    metadata = follower_client.get("/model/metadata").json()
    assert metadata["version"] == "1"
    assert metadata["last_reload_error"]["version"] == "2"
    assert "drops 1 feature(s) (feature_30)" in metadata["last_reload_error"]["reason"]
    assert "last_reload_error" not in follower_client.get("/health").json()
    assert follower_client.get("/ping").status_code == 200
    metrics = follower_client.get("/metrics").text
    assert sample(metrics, "model_reloads_total", outcome="refused", variant="champion") == refusals + 1
    assert _failures(follower_client) == failures + 1


def test_a_version_failing_its_input_example_is_refused(
    follower_client: TestClient, model_name: str, client_mlflow: MlflowClient
) -> None:
    register_broken(model_name)
    client_mlflow.set_registered_model_alias(model_name, "champion", "2")
    wait_for(
        lambda: follower_client.get("/model/metadata").json()["last_reload_error"] is not None, what="refusal"
    )
    error = follower_client.get("/model/metadata").json()["last_reload_error"]
    assert error["reason"] == "it fails on its own input example: this version is broken"
    assert _version(follower_client) == "1"


def _last_check(client: TestClient) -> str | None:
    return client.get("/model/metadata").json()["registry"]["last_check"]


def _await_polls(client: TestClient, polls: int) -> None:
    """Until the follower has asked the registry `polls` more times (each check stamps `last_check`)."""
    seen = [_last_check(client)]

    def another() -> bool:
        check = _last_check(client)
        if check != seen[-1]:
            seen.append(check)
        return len(seen) > polls

    wait_for(another, what=f"{polls} more registry checks")


def test_a_refused_version_is_retried_only_when_the_alias_moves_again(
    follower_client: TestClient, model_name: str, client_mlflow: MlflowClient
) -> None:
    register_broken(model_name)
    client_mlflow.set_registered_model_alias(model_name, "champion", "2")
    wait_for(
        lambda: follower_client.get("/model/metadata").json()["last_reload_error"] is not None, what="refusal"
    )
    failures = _failures(follower_client)
    _await_polls(follower_client, 3)  # the alias still on the refused version
    assert _failures(follower_client) == failures
    register_ours(model_name)
    client_mlflow.set_registered_model_alias(model_name, "champion", "3")
    wait_for(lambda: _version(follower_client) == "3", what="version 3 live")
    assert follower_client.get("/model/metadata").json()["last_reload_error"] is None


def test_a_signature_change_goes_live_when_allowed(
    tracking_server: TrackingServer, model_name: str, client_mlflow: MlflowClient
) -> None:
    with _app(tracking_server, model_name, allow_signature_change=True) as client:
        register_29_features(model_name)
        client_mlflow.set_registered_model_alias(model_name, "champion", "2")
        wait_for(lambda: _version(client) == "2", what="version 2 live")
        features = client.get("/model/features").json()
        assert features["count"] == 29


def _delivery(
    body: dict[str, object], *, secret: str = SECRET, sent: float | None = None
) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    delivery, timestamp = uuid.uuid4().hex, str(int(sent if sent is not None else time.time()))
    headers = {
        "content-type": "application/json",
        SIGNATURE_HEADER: sign(secret, delivery, timestamp, raw),
        TIMESTAMP_HEADER: timestamp,
        DELIVERY_ID_HEADER: delivery,
    }
    return raw, headers


def test_a_signed_webhook_swaps_at_once_without_polling(
    tracking_server: TrackingServer, model_name: str, client_mlflow: MlflowClient
) -> None:
    with _app(tracking_server, model_name, model_poll_seconds=0) as client:
        register_ours(model_name)
        client_mlflow.set_registered_model_alias(model_name, "champion", "2")
        assert _last_check(client) is None  # nobody has asked the registry since the start
        assert _version(client) == "1"
        event = {
            "entity": "model_version_alias",
            "action": "created",
            "data": {"name": model_name, "alias": "champion", "version": "2"},
        }
        raw, headers = _delivery(event)
        response = client.post("/webhooks/mlflow", content=raw, headers=headers)
        assert response.status_code == 202
        assert response.json() == {"status": "accepted", "reason": f"created {model_name}@champion"}
        wait_for(lambda: _version(client) == "2", timeout=10, what="version 2 live")
        assert _last_check(client) is not None  # the delivery made it ask


@pytest.mark.parametrize(
    ("secret", "age", "message"),
    [
        ("wrong", 0, "the signature does not match"),
        (SECRET, 3600, "the timestamp is more than 300 s away from now"),
    ],
    ids=["bad signature", "stale"],
)
def test_a_bad_webhook_is_401_and_changes_nothing(
    follower_client: TestClient, model_name: str, secret: str, age: float, message: str
) -> None:
    event = {
        "entity": "model_version_alias",
        "action": "created",
        "data": {"name": model_name, "alias": "champion", "version": "1"},
    }
    raw, headers = _delivery(event, secret=secret, sent=time.time() - age)
    response = follower_client.post("/webhooks/mlflow", content=raw, headers=headers)
    assert response.status_code == 401
    assert response.json()["error_code"] == "INVALID_DELIVERY"
    assert response.json()["message"] == f"delivery refused: {message}"


def test_a_webhook_for_another_model_is_ignored(follower_client: TestClient) -> None:
    event = {
        "entity": "model_version_alias",
        "action": "created",
        "data": {"name": "other", "alias": "champion", "version": "9"},
    }
    raw, headers = _delivery(event)
    response = follower_client.post("/webhooks/mlflow", content=raw, headers=headers)
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"


def test_webhooks_are_refused_without_a_secret(tracking_server: TrackingServer, model_name: str) -> None:
    with _app(tracking_server, model_name, mlflow_webhook_secret=None) as client:
        raw, headers = _delivery({"entity": "model_version_alias"})
        response = client.post("/webhooks/mlflow", content=raw, headers=headers)
        assert response.status_code == 403
        assert response.json()["error_code"] == "WEBHOOKS_DISABLED"


def test_reload_checks_the_registry_now(
    tracking_server: TrackingServer, model_name: str, client_mlflow: MlflowClient
) -> None:
    with _app(tracking_server, model_name, model_poll_seconds=0) as client:
        assert client.post("/model/reload").json()["outcome"] == "unchanged"
        register_ours(model_name)
        client_mlflow.set_registered_model_alias(model_name, "champion", "2")
        body = client.post("/model/reload").json()
        assert (body["outcome"], body["version"], body["previous"]) == ("swapped", "2", "1")
        assert body["seconds"] > 0
        assert _version(client) == "2"


def test_versions_lists_the_registry_and_marks_the_live_one(
    follower_client: TestClient, model_name: str, client_mlflow: MlflowClient
) -> None:
    register_ours(model_name)
    client_mlflow.set_registered_model_alias(model_name, "challenger", "2")
    body = follower_client.get("/model/versions").json()
    assert body["name"] == model_name
    assert body["live_version"] == "1"
    assert [(v["version"], v["aliases"], v["live"]) for v in body["versions"]] == [
        ("2", ["challenger"], False),
        ("1", ["champion"], True),
    ]
