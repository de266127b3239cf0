"""README promises that only a real server process can show, each against `python -m server` as
the README runs it: keys and JWT keys from files, the live-version tag (named by DEPLOYMENT_NAME,
or off), `runs:/` URIs, what `/model/reload` answers, `/ping` for a model that fails its example,
polling backoff while the registry is down, a webhook reaching every worker, admission control
and the request timeout, and BATCH_MAX_WAIT_MS.

No timing window decides these tests: requests are held in flight by their clients (headers and
half a body sent), the server's own counters say when something happened, and work queued on the
server's single model-loader thread (the registry tags) is known to be done once a later
`/model/reload`, which runs on that thread too, has answered.
"""

from __future__ import annotations

import http.client
import itertools
import json
import secrets
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import jwt
import mlflow
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mlflow import MlflowClient

from registry_scripts.processes import ServerProcess, api_process
from registry_scripts.tracking_server import TrackingServer
from server.edge.credentials import digest
from server.live.webhooks import DELIVERY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.helpers import half_sent, run_ok, wait_for
from tests.registry import FEATURES, champion_model, register_29_features, register_broken, register_ours
from tests.server.metrics_text import counted, sample, served_versions

ROW = {k: float(v) for k, v in FEATURES.iloc[0].items()}
BODY = json.dumps(ROW).encode()


@pytest.fixture
def model_name(client_mlflow: MlflowClient) -> str:
    return champion_model(client_mlflow, "documented")


def _following(model_name: str, **settings: str) -> dict[str, str]:
    """Settings for a server following `model_name`@champion only when told (no polling)."""
    return {"MODEL_URI": f"models:/{model_name}@champion", "MODEL_POLL_SECONDS": "0", **settings}


def _reload(server: ServerProcess) -> dict:
    response = httpx.post(f"{server.url}/model/reload", timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def _serving_tags(client: MlflowClient, name: str, version: str) -> dict[str, str]:
    tags = client.get_model_version(name, version).tags
    return {key: value for key, value in tags.items() if key.startswith("serving.")}


def _answer(sock: socket.socket, *, finish: bool = True) -> tuple[int, dict[str, str], dict]:
    """Send the rest of the held body (unless not `finish`); the answer's status, headers, JSON."""
    with sock:
        if finish:
            sock.sendall(BODY[len(BODY) // 2 :])
        response = http.client.HTTPResponse(sock)
        response.begin()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, json.loads(response.read())


def _in_flight(server: ServerProcess) -> float:
    return sample(httpx.get(f"{server.url}/metrics").text, "prediction_requests_in_flight")


# API_KEYS_FILE and JWT_KEY_FILE: "a file (a mounted Secret) with more keys in the same format";
# "the HS256 secret or RS256 public key (PEM), inline or from a file".


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[bytes, bytes]:
    """An RS256 key pair: (private PEM, public PEM)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


@pytest.fixture(scope="module")
def keys() -> dict[str, str]:
    return {"inline": secrets.token_urlsafe(32), "filed": secrets.token_urlsafe(32)}


@pytest.fixture(scope="module")
def credentials_server(
    base_env: dict[str, str],
    champion_uri: str,
    tmp_path_factory: pytest.TempPathFactory,
    keys: dict[str, str],
    rsa_keys: tuple[bytes, bytes],
) -> Iterator[ServerProcess]:
    """A production server whose credentials come from files as well as from API_KEYS."""
    folder = tmp_path_factory.mktemp("credentials")
    keys_file = folder / "api-keys"
    keys_file.write_text(f"# mounted from a Secret\nfiled:{digest(keys['filed'])}:predict+admin\n")
    jwt_key_file = folder / "jwt.pem"
    jwt_key_file.write_bytes(rsa_keys[1])
    settings = {
        "MODEL_URI": champion_uri,
        "MODEL_POLL_SECONDS": "0",
        "ENVIRONMENT": "production",
        "AUTH_ENABLED": "true",
        "AUTH_FAILURES_PER_MINUTE": "0",
        "TAG_LIVE_VERSION": "false",  # leave the shared champion version's tags alone
        "API_KEYS": f"inline:{digest(keys['inline'])}:predict",
        "API_KEYS_FILE": str(keys_file),
        "JWT_ALGORITHM": "RS256",
        "JWT_KEY_FILE": str(jwt_key_file),
    }
    with api_process(base_env, folder / "api.log", **settings) as server:
        yield server


def test_keys_from_api_keys_file_are_accepted_beside_api_keys(
    credentials_server: ServerProcess, keys: dict[str, str]
) -> None:
    url = credentials_server.url
    for key in (keys["filed"], keys["inline"]):
        assert httpx.post(f"{url}/predict", json=ROW, headers={"X-API-Key": key}).status_code == 200
    assert httpx.post(f"{url}/predict", json=ROW).status_code == 401


def test_the_scopes_of_a_filed_key_apply(credentials_server: ServerProcess, keys: dict[str, str]) -> None:
    url = credentials_server.url
    filed = {"Authorization": f"Bearer {keys['filed']}"}
    inline = {"X-API-Key": keys["inline"]}
    assert httpx.post(f"{url}/model/reload", headers=filed, timeout=60).status_code == 200  # admin
    assert httpx.post(f"{url}/model/reload", headers=inline).status_code == 403  # predict only


def test_a_jwt_is_verified_with_the_public_key_in_jwt_key_file(
    credentials_server: ServerProcess, rsa_keys: tuple[bytes, bytes]
) -> None:
    def bearer(private_pem: bytes) -> dict[str, str]:
        claims = {"sub": "svc", "exp": time.time() + 300, "scope": "predict"}
        return {"Authorization": f"Bearer {jwt.encode(claims, private_pem, algorithm='RS256')}"}

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    url = credentials_server.url
    assert httpx.post(f"{url}/predict", json=ROW, headers=bearer(rsa_keys[0])).status_code == 200
    assert httpx.post(f"{url}/predict", json=ROW, headers=bearer(other)).status_code == 401


# "the live version carries the tag serving.<DEPLOYMENT_NAME> = live since <time>; the version it
# replaced loses it"; TAG_LIVE_VERSION=false: no tags.


def test_the_live_tag_carries_the_deployment_name(
    base_env: dict[str, str], model_name: str, client_mlflow: MlflowClient, tmp_path: Path
) -> None:
    deployment = f"blue-{uuid.uuid4().hex[:6]}"
    register_ours(model_name)
    with api_process(
        base_env, tmp_path / "api.log", **_following(model_name, DEPLOYMENT_NAME=deployment)
    ) as api:
        assert _reload(api)["outcome"] == "unchanged"  # after the start-up's tagging, on the same thread
        started = _serving_tags(client_mlflow, model_name, "1")
        client_mlflow.set_registered_model_alias(model_name, "champion", "2")
        assert _reload(api)["outcome"] == "swapped"
        assert _reload(api)["outcome"] == "unchanged"  # after the swap's retagging
        live, replaced = (_serving_tags(client_mlflow, model_name, v) for v in ("2", "1"))
    assert list(started) == [f"serving.{deployment}"]
    assert started[f"serving.{deployment}"].startswith("live since ")
    assert list(live) == [f"serving.{deployment}"]
    assert live[f"serving.{deployment}"].startswith("live since ")
    assert replaced == {}


def test_tag_live_version_false_leaves_the_registry_untagged(
    base_env: dict[str, str], model_name: str, client_mlflow: MlflowClient, tmp_path: Path
) -> None:
    register_ours(model_name)
    settings = _following(model_name, TAG_LIVE_VERSION="false")
    with api_process(base_env, tmp_path / "api.log", **settings) as api:
        assert _reload(api)["outcome"] == "unchanged"
        client_mlflow.set_registered_model_alias(model_name, "champion", "2")
        assert _reload(api)["outcome"] == "swapped"
        assert _reload(api)["outcome"] == "unchanged"  # anything the swap queued is done by now
    assert _serving_tags(client_mlflow, model_name, "1") == {}
    assert _serving_tags(client_mlflow, model_name, "2") == {}


# MODEL_URI may be a `runs:/…` URI.


def test_a_runs_uri_is_served(
    base_env: dict[str, str], model_name: str, client_mlflow: MlflowClient, tmp_path: Path
) -> None:
    run_id = client_mlflow.get_model_version(model_name, "1").run_id
    client_mlflow.log_metric(run_id, "accuracy", 0.97)
    uri = f"runs:/{run_id}/model"
    expected = mlflow.pyfunc.load_model(uri).predict(FEATURES.head(1))
    with api_process(base_env, tmp_path / "api.log", MODEL_URI=uri, TAG_LIVE_VERSION="false") as api:
        predicted = httpx.post(f"{api.url}/predict", json=ROW)
        metadata = httpx.get(f"{api.url}/model/metadata").json()
    assert predicted.status_code == 200
    assert predicted.json()["label"] == expected["label"].iloc[0]
    assert predicted.json()["probabilities"]["malignant"] == expected["probability_malignant"].iloc[0]
    assert metadata["model_uri"] == uri
    assert metadata["run_id"] == run_id
    assert metadata["metrics"] == {"accuracy": 0.97}
    assert metadata["registry"]["following"] is None  # a run is no alias: nothing to follow


# POST /model/reload "answers swapped, unchanged, refused or failed"; the refusal is counted.


def test_reload_answers_refused_for_a_version_the_gate_refuses(
    base_env: dict[str, str], model_name: str, client_mlflow: MlflowClient, tmp_path: Path
) -> None:
    register_29_features(model_name)
    with api_process(base_env, tmp_path / "api.log", **_following(model_name)) as api:
        before = httpx.get(f"{api.url}/metrics").text
        client_mlflow.set_registered_model_alias(model_name, "champion", "2")
        body = _reload(api)
        after = httpx.get(f"{api.url}/metrics").text
        served = httpx.post(f"{api.url}/predict", json=ROW).headers["x-model-version"]
    assert (body["outcome"], body["version"], body["previous"]) == ("refused", "2", "1")
    assert "drops 1 feature(s) (feature_30)" in body["reason"]
    assert served == "1"
    assert sample(after, "model_reloads_total", outcome="refused", variant="champion") == (
        counted(before, "model_reloads_total", outcome="refused", variant="champion") + 1
    )
    assert (
        sample(after, "model_reload_failures_total", variant="champion")
        == counted(before, "model_reload_failures_total", variant="champion") + 1
    )


def test_reload_answers_failed_for_a_version_that_cannot_be_loaded(
    base_env: dict[str, str], model_name: str, client_mlflow: MlflowClient, tmp_path: Path
) -> None:
    run_id = client_mlflow.get_model_version(model_name, "1").run_id
    # A version whose files are not there: registered against a path the run never logged.
    missing = client_mlflow.create_model_version(model_name, f"runs:/{run_id}/nothing-here", run_id=run_id)
    with api_process(base_env, tmp_path / "api.log", **_following(model_name)) as api:
        before = httpx.get(f"{api.url}/metrics").text
        client_mlflow.set_registered_model_alias(model_name, "champion", missing.version)
        body = _reload(api)
        after = httpx.get(f"{api.url}/metrics").text
        served = httpx.post(f"{api.url}/predict", json=ROW).headers["x-model-version"]
        metadata = httpx.get(f"{api.url}/model/metadata").json()
    assert (body["outcome"], body["version"], body["previous"]) == ("failed", missing.version, "1")
    assert body["reason"].startswith("could not load it: ")
    assert served == "1"
    assert metadata["last_reload_error"]["version"] == missing.version
    assert sample(after, "model_reloads_total", outcome="failed", variant="champion") == (
        counted(before, "model_reloads_total", outcome="failed", variant="champion") + 1
    )


# /ping: "200 only when a model is loaded and answers a prediction on its logged input example,
# else 503 with the reason".


def test_ping_is_503_while_the_served_model_fails_its_input_example(
    base_env: dict[str, str], model_name: str, tmp_path: Path
) -> None:
    broken = register_broken(model_name)
    settings = {"MODEL_URI": f"models:/{model_name}/{broken}", "TAG_LIVE_VERSION": "false"}
    server = api_process(base_env, tmp_path / "api.log", **settings)
    server.ready_path = "/health"  # it never becomes ready
    with server:
        ping = httpx.get(f"{server.url}/ping")
        health = httpx.get(f"{server.url}/health").json()
    assert ping.status_code == 503
    assert ping.json()["status"] == "unavailable"
    assert ping.json()["reason"]
    assert (health["model_loaded"], health["model_version"]) == (True, broken)


# "registry down: polling backs off (up to a minute), /ping stays ready".


def _last_checks(url: str, count: int) -> list[datetime]:
    """The times of the next `count` registry checks, as the server stamps them (`last_check`)."""
    seen: list[datetime] = []

    def another() -> bool:
        metadata = httpx.get(f"{url}/model/metadata").json()["registry"]
        check = metadata["last_check"]
        if metadata["reachable"] is False and (not seen or datetime.fromisoformat(check) != seen[-1]):
            seen.append(datetime.fromisoformat(check))
        return len(seen) >= count

    wait_for(another, 120, f"{count} failed registry checks", poll=0.02)
    return seen


def test_polling_backs_off_while_the_registry_is_down(base_env: dict[str, str], tmp_path: Path) -> None:
    poll = 0.25
    registry = TrackingServer(tmp_path / "mlflow")
    registry.start()
    # No retries inside the MLflow client (the server's default): each check fails at once.
    env = {**base_env, "MLFLOW_TRACKING_URI": registry.url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    try:
        run_ok("registry_scripts.train", env=env)
        settings = {"MODEL_POLL_SECONDS": str(poll), "TAG_LIVE_VERSION": "false"}
        with api_process(env, tmp_path / "api.log", **settings) as api:
            registry.stop()
            checks = _last_checks(api.url, 5)
            ready = httpx.get(f"{api.url}/ping").status_code
    finally:
        registry.stop()
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(checks)]
    # After n failures the next check waits poll * 2**n: 0.5, 1, 2 and 4 s here. A gap is that wait
    # plus the difference of two failed calls' durations, so the later gaps are bounded loosely;
    # without backoff every gap would be about `poll`.
    assert gaps[-1] >= poll * 2**4 - 1.0
    assert gaps[-2] >= poll * 2**3 - 1.0
    assert sum(gaps) >= poll * (2 + 4 + 8 + 16) - 1.0
    assert ready == 200


# "a webhook delivered to one worker reaches the others through a signal file".


def test_a_webhook_delivered_to_one_worker_makes_every_worker_serve_the_new_version(
    base_env: dict[str, str], model_name: str, client_mlflow: MlflowClient, tmp_path: Path
) -> None:
    secret = secrets.token_urlsafe(32)
    settings = _following(model_name, WORKERS="2", MLFLOW_WEBHOOK_SECRET=secret, TAG_LIVE_VERSION="false")
    register_ours(model_name)
    with api_process(base_env, tmp_path / "api.log", **settings) as api:

        def versions() -> list[str]:
            return sorted(served_versions(httpx.get(f"{api.url}/metrics").text).values())

        wait_for(lambda: versions() == ["1", "1"], 90, "both workers on version 1")
        client_mlflow.set_registered_model_alias(model_name, "champion", "2")
        event = {
            "entity": "model_version_alias",
            "action": "created",
            "data": {"name": model_name, "alias": "champion", "version": "2"},
        }
        raw, delivery, timestamp = json.dumps(event).encode(), uuid.uuid4().hex, str(int(time.time()))
        headers = {
            "content-type": "application/json",
            SIGNATURE_HEADER: sign(secret, delivery, timestamp, raw),
            TIMESTAMP_HEADER: timestamp,
            DELIVERY_ID_HEADER: delivery,
        }
        accepted = httpx.post(f"{api.url}/webhooks/mlflow", content=raw, headers=headers)
        assert accepted.status_code == 202, accepted.text
        # Polling is off: only the delivery, and the signal file for the worker that did not get
        # it, can move them.
        wait_for(lambda: versions() == ["2", "2"], 60, "both workers on version 2")


# MAX_CONCURRENT_REQUESTS: "beyond that, 503 with Retry-After at once"; REQUEST_TIMEOUT_SECONDS:
# "a prediction request unanswered after this gets 504".


def test_beyond_max_concurrent_requests_the_server_answers_503_at_once(
    base_env: dict[str, str], champion_uri: str, tmp_path: Path
) -> None:
    settings = {"MODEL_URI": champion_uri, "MAX_CONCURRENT_REQUESTS": "1", "TAG_LIVE_VERSION": "false"}
    with api_process(base_env, tmp_path / "api.log", **settings) as server:
        held = half_sent(server.port, BODY)
        wait_for(lambda: _in_flight(server) == 1, 30, "one request in flight")
        refused = httpx.post(f"{server.url}/predict", json=ROW)  # answered while the first is held
        first = _answer(held)
        after = httpx.post(f"{server.url}/predict", json=ROW)
    assert refused.status_code == 503
    assert refused.json()["error_code"] == "OVERLOADED"
    assert refused.headers["retry-after"] == "1"
    assert first[0] == 200
    assert after.status_code == 200


def test_a_request_unanswered_after_request_timeout_seconds_gets_504(
    base_env: dict[str, str], champion_uri: str, tmp_path: Path
) -> None:
    settings = {"MODEL_URI": champion_uri, "REQUEST_TIMEOUT_SECONDS": "1", "TAG_LIVE_VERSION": "false"}
    with api_process(base_env, tmp_path / "api.log", **settings) as server:
        # The rest of the body never comes: only the timeout can answer it.
        status, headers, body = _answer(half_sent(server.port, BODY), finish=False)
        after = httpx.post(f"{server.url}/predict", json=ROW)
    assert status == 504
    assert body["error_code"] == "TIMEOUT"
    assert body["message"] == "no answer within 1 s"
    assert body["request_id"] == headers["x-request-id"]
    assert after.status_code == 200


# BATCH_MAX_WAIT_MS: "how long a batch waits for more requests".


def test_batch_max_wait_ms_holds_a_batch_open_for_requests_that_come_later(
    base_env: dict[str, str], champion_uri: str, tmp_path: Path
) -> None:
    """INLINE_BUDGET_US=0 queues every request (none is cheap enough to run at once), so each
    waits BATCH_MAX_WAIT_MS for company: two that arrive within it share one model call."""
    wait_ms = 3000
    settings = {
        "MODEL_URI": champion_uri,
        "BATCH_MAX_WAIT_MS": str(wait_ms),
        "INLINE_BUDGET_US": "0",
        "TAG_LIVE_VERSION": "false",
    }
    with api_process(base_env, tmp_path / "api.log", **settings) as server:
        before = httpx.get(f"{server.url}/metrics").text
        first, second = half_sent(server.port, BODY), half_sent(server.port, BODY)
        wait_for(lambda: _in_flight(server) == 2, 30, "two requests in flight")
        started = time.monotonic()
        first.sendall(BODY[len(BODY) // 2 :])
        answers = [_answer(second), _answer(first, finish=False)]
        waited = time.monotonic() - started
        after = httpx.get(f"{server.url}/metrics").text
    assert [status for status, _, _ in answers] == [200, 200]
    calls = counted(after, "batch_size_count", kind="model_call") - counted(
        before, "batch_size_count", kind="model_call"
    )
    rows = counted(after, "batch_size_sum", kind="model_call") - counted(
        before, "batch_size_sum", kind="model_call"
    )
    assert (calls, rows) == (1, 2)
    assert waited >= wait_ms / 1000 - 0.05  # the batch's timer: a lower bound, whatever the load
