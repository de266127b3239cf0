"""Authentication and scopes: API keys (digests only), JWTs (HS256 and RS256), 401 vs 403."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import jwt
import pandas as pd
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from server.app import create_app
from server.edge.credentials import CredentialError, digest, parse_api_keys
from server.live.loaded_model import LoadedModel
from server.live.model_store import ModelStore
from server.settings import ServerSettings
from tests.server.conftest import record

READER_KEY = "reader-key-0123456789"
OPS_KEY = "ops-key-9876543210"
JWT_SECRET = "jwt-secret-for-tests-only-0123456789"
ISSUER, AUDIENCE = "https://issuer.example", "registry-serve"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC = (
    RSA_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def _keys() -> str:
    return f"reader:{digest(READER_KEY)}:predict,ops:{digest(OPS_KEY)}:predict+admin+metrics"


def _client(base: ServerSettings, model: LoadedModel, **auth: object) -> TestClient:
    options = {"auth_enabled": True, "api_keys": _keys(), "metrics_auth": True, **auth}
    settings = ServerSettings(
        model_uri=base.model_uri, mlflow_tracking_uri=base.mlflow_tracking_uri, **options
    )
    return TestClient(create_app(settings, store=ModelStore(model)), raise_server_exceptions=False)


@pytest.fixture
def secured(settings: ServerSettings, loaded_champion: LoadedModel) -> Iterator[TestClient]:
    hs = {"jwt_algorithm": "HS256", "jwt_key": JWT_SECRET, "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
    with _client(settings, loaded_champion, **hs) as client:
        yield client


def _token(key: str = JWT_SECRET, algorithm: str = "HS256", **claims: object) -> str:
    payload = {"sub": "svc-a", "iss": ISSUER, "aud": AUDIENCE, "exp": time.time() + 60, "scope": "predict"}
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm=algorithm)


def test_no_credential_is_401_with_a_challenge(secured: TestClient, dataset: pd.DataFrame) -> None:
    response = secured.post("/predict", json=record(dataset))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="registry-serve"'
    assert response.json()["error_code"] == "UNAUTHENTICATED"
    assert response.json()["message"] == "an API key or bearer token is required"


def test_a_wrong_key_is_401_invalid_token(secured: TestClient, dataset: pd.DataFrame) -> None:
    response = secured.post("/predict", json=record(dataset), headers={"X-API-Key": "guess"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="registry-serve", error="invalid_token"'
    assert response.json()["message"] == "the API key is not valid"


@pytest.mark.parametrize("header", ["X-API-Key", "Authorization"])
def test_a_valid_key_is_accepted_either_way(secured: TestClient, dataset: pd.DataFrame, header: str) -> None:
    value = READER_KEY if header == "X-API-Key" else f"Bearer {READER_KEY}"
    assert secured.post("/predict", json=record(dataset), headers={header: value}).status_code == 200


def test_the_wrong_scope_is_403(secured: TestClient) -> None:
    response = secured.post("/model/reload", headers={"X-API-Key": READER_KEY})
    assert response.status_code == 403
    assert response.json()["error_code"] == "FORBIDDEN"
    assert response.json()["message"] == "this credential lacks the 'admin' scope"
    assert secured.post("/model/reload", headers={"X-API-Key": OPS_KEY}).status_code == 200


def test_health_ping_and_docs_stay_open(secured: TestClient) -> None:
    for path in ("/health", "/ping", "/docs", "/openapi.json"):
        assert secured.get(path).status_code == 200, path


def test_metrics_can_require_their_own_scope(secured: TestClient) -> None:
    assert secured.get("/metrics").status_code == 401
    assert secured.get("/metrics", headers={"X-API-Key": READER_KEY}).status_code == 403
    assert secured.get("/metrics", headers={"X-API-Key": OPS_KEY}).status_code == 200


def test_every_prediction_route_needs_the_predict_scope(secured: TestClient) -> None:
    for method, path in [
        ("POST", "/predict"),
        ("POST", "/batch-predict"),
        ("POST", "/invocations"),
        ("GET", "/model/metadata"),
        ("GET", "/model/features"),
        ("GET", "/model/versions"),
    ]:
        assert secured.request(method, path).status_code == 401, path


def test_a_valid_jwt_is_accepted(secured: TestClient, dataset: pd.DataFrame) -> None:
    headers = {"Authorization": f"Bearer {_token()}"}
    assert secured.post("/predict", json=record(dataset), headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("claims", "key", "message"),
    [
        ({"exp": time.time() - 5}, JWT_SECRET, "the token has expired"),
        ({"aud": "someone-else"}, JWT_SECRET, "the token is not for this audience"),
        ({"iss": "https://evil.example"}, JWT_SECRET, "the token is from another issuer"),
        ({}, "another-secret-of-sufficient-length!!", "the token is not valid"),
        ({"exp": None}, JWT_SECRET, "the token is not valid"),
    ],
    ids=["expired", "wrong audience", "wrong issuer", "bad signature", "no expiry"],
)
def test_bad_jwts_are_401(
    secured: TestClient, dataset: pd.DataFrame, claims: dict, key: str, message: str
) -> None:
    response = secured.post(
        "/predict", json=record(dataset), headers={"Authorization": f"Bearer {_token(key, **claims)}"}
    )
    assert response.status_code == 401
    assert response.json()["message"] == message


def test_a_jwt_without_the_scope_is_403(secured: TestClient) -> None:
    response = secured.post("/model/reload", headers={"Authorization": f"Bearer {_token(scope='predict')}"})
    assert response.status_code == 403
    admin = secured.post(
        "/model/reload", headers={"Authorization": f"Bearer {_token(scp=['admin'], scope=None)}"}
    )
    assert admin.status_code == 200


@pytest.mark.parametrize(
    "claims",
    [{"scope": 7}, {"scope": None}, {"scope": [{"admin": True}]}, {"scp": [1, 2]}],
    ids=["a number", "null", "a list of objects", "scp of numbers"],
)
def test_a_signed_token_with_a_scope_claim_of_another_shape_is_401(secured: TestClient, claims: dict) -> None:
    payload = {"sub": "svc-a", "iss": ISSUER, "aud": AUDIENCE, "exp": time.time() + 60, **claims}
    token = jwt.encode(payload, JWT_SECRET, algorithm="HS256")
    response = secured.post("/model/reload", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["message"] == "the token's scope claim is not a string or a list of strings"


def test_rs256_tokens_verify_with_the_public_key(
    settings: ServerSettings, loaded_champion: LoadedModel, dataset: pd.DataFrame
) -> None:
    rs = {"jwt_algorithm": "RS256", "jwt_key": RSA_PUBLIC, "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
    with _client(settings, loaded_champion, **rs) as client:
        token = _token(RSA_KEY, algorithm="RS256")
        assert (
            client.post(
                "/predict", json=record(dataset), headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 200
        )
        forged = _token(JWT_SECRET, algorithm="HS256")  # an HS256 token "signed" with a guessable key
        assert (
            client.post(
                "/predict", json=record(dataset), headers={"Authorization": f"Bearer {forged}"}
            ).status_code
            == 401
        )


def test_keys_and_tokens_are_never_logged(
    secured: TestClient, dataset: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    token = _token()
    with caplog.at_level(logging.DEBUG):
        secured.post("/predict", json=record(dataset), headers={"X-API-Key": READER_KEY})
        secured.post("/predict", json=record(dataset), headers={"X-API-Key": "wrong-" + OPS_KEY})
        secured.post("/predict", json=record(dataset), headers={"Authorization": f"Bearer {token}"})
    assert READER_KEY not in caplog.text
    assert OPS_KEY not in caplog.text
    assert token not in caplog.text


def test_api_key_configuration_holds_digests_only() -> None:
    with pytest.raises(CredentialError, match="never the key itself"):
        parse_api_keys(f"reader:{READER_KEY}:predict")
    with pytest.raises(CredentialError, match="unknown scopes"):
        parse_api_keys(f"reader:{digest(READER_KEY)}:predict+root")
    (key,) = parse_api_keys(f"# a comment, with a comma\nreader:{digest(READER_KEY)}:predict")
    assert (key.name, key.digest) == ("reader", digest(READER_KEY))


def test_auth_without_credentials_configured_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="AUTH_ENABLED needs API_KEYS"):
        ServerSettings(auth_enabled=True)


def _from(app_client: TestClient, address: str) -> TestClient:
    return TestClient(app_client.app, raise_server_exceptions=False, client=(address, 50000))


def test_failed_credentials_are_limited_per_client_address(
    settings: ServerSettings, loaded_champion: LoadedModel, dataset: pd.DataFrame
) -> None:
    with _client(settings, loaded_champion, auth_failures_per_minute=3) as base:
        guesser, neighbour = _from(base, "10.0.0.1"), _from(base, "10.0.0.2")
        wrong = {"X-API-Key": "guess"}
        assert [guesser.post("/predict", headers=wrong).status_code for _ in range(3)] == [401] * 3
        blocked = guesser.post("/predict", headers=wrong)
        assert blocked.status_code == 429
        assert blocked.json()["error_code"] == "RATE_LIMITED"
        assert blocked.json()["message"] == (
            f"too many failed credentials from this address; retry in {blocked.headers['retry-after']} s"
        )
        assert 1 <= int(blocked.headers["retry-after"]) <= 20
        # Blocked means blocked: a valid key from that address waits too, so guessing gets no further.
        valid = {"X-API-Key": READER_KEY}
        assert guesser.post("/predict", json=record(dataset), headers=valid).status_code == 429
        # Other addresses are not affected, and valid credentials never count as failures.
        for _ in range(5):
            assert neighbour.post("/predict", json=record(dataset), headers=valid).status_code == 200
        assert neighbour.post("/predict", headers=wrong).status_code == 401


def test_failed_credentials_are_not_limited_with_the_limit_off(
    settings: ServerSettings, loaded_champion: LoadedModel
) -> None:
    with _client(settings, loaded_champion, auth_failures_per_minute=0) as client:
        statuses = {client.post("/predict", headers={"X-API-Key": "guess"}).status_code for _ in range(40)}
    assert statuses == {401}


def test_failed_credentials_are_still_limited_while_redis_is_unreachable(
    settings: ServerSettings, loaded_champion: LoadedModel
) -> None:
    """Rate limits let requests through during a Redis outage; this limit is a defence, so each
    process counts failures on its own meanwhile instead."""
    options = {"auth_failures_per_minute": 3, "rate_limit_redis_url": "redis://127.0.0.1:9/0"}
    with _client(settings, loaded_champion, **options) as client:
        statuses = [client.post("/predict", headers={"X-API-Key": "guess"}).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
