"""Every promise of docs/security.md, checked against a real server process started as production
runs it: ENVIRONMENT=production, authentication on (API keys and JWTs), /metrics behind its scope,
a webhook secret. Each test names the promise it proves; the rest of the suite tests the same
mechanisms in more detail, in process.
"""

from __future__ import annotations

import io
import json
import operator
import re
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import mlflow
import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient
from mlflow.models.signature import infer_signature
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from registry_scripts.dataset import load_frame
from registry_scripts.processes import ServerProcess, api_process, free_port
from server.edge.credentials import digest
from server.grpc import messages
from server.live.webhooks import DELIVERY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from server.observe.prediction_log.writer import WRITER_MODULE
from tests.helpers import wait_for
from tests.registry import register_ours, register_pickled
from tests.server.test_credentials import shipped_api_keys_file, shipped_api_keys_line

FEATURES = load_frame()[0]
ROW = {name: float(value) for name, value in FEATURES.iloc[0].items()}
NAMES = list(FEATURES.columns)
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Production:
    """A production-configured server and the credentials it accepts."""

    server: ServerProcess
    reader_key: str
    ops_key: str
    jwt_key: str
    webhook_secret: str
    folder: Path
    grpc_port: int

    @property
    def url(self) -> str:
        return self.server.url

    def reader(self) -> dict[str, str]:
        return {"X-API-Key": self.reader_key}

    def ops(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.ops_key}"}


def production_settings(**overrides: str) -> tuple[dict[str, str], dict[str, str]]:
    """Production settings with fresh random credentials; returns (settings, the secrets)."""
    keys = {
        "reader": secrets.token_urlsafe(32),
        "ops": secrets.token_urlsafe(32),
        "jwt": secrets.token_urlsafe(48),
        "webhook": secrets.token_urlsafe(32),
    }
    settings = {
        "ENVIRONMENT": "production",
        "AUTH_ENABLED": "true",
        "API_KEYS": f"reader:{digest(keys['reader'])}:predict,"
        f"ops:{digest(keys['ops'])}:predict+admin+metrics",
        "JWT_ALGORITHM": "HS256",
        "JWT_KEY": keys["jwt"],
        "METRICS_AUTH": "true",
        "MLFLOW_WEBHOOK_SECRET": keys["webhook"],
        "MODEL_POLL_SECONDS": "0",
        **overrides,
    }
    return settings, keys


@pytest.fixture(scope="module")
def production(
    base_env: dict[str, str], champion_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Production]:
    # Failed credentials are limited per client address (its own test, below): here every request
    # comes from 127.0.0.1, and the property tests send many bad ones on purpose.
    # Two workers, as the compose and Kubernetes examples run it.
    folder = tmp_path_factory.mktemp("production")
    grpc_port = free_port()
    settings, keys = production_settings(
        MODEL_URI=champion_uri,
        AUTH_FAILURES_PER_MINUTE="0",
        WORKERS="2",
        PREDICTION_LOG_URL=f"sqlite:///{folder / 'predictions.db'}",
        GRPC_PORT=str(grpc_port),
    )
    with api_process(base_env, folder / "api.log", **settings) as server:
        yield Production(server, keys["reader"], keys["ops"], keys["jwt"], keys["webhook"], folder, grpc_port)


@pytest.fixture
def http(production: Production) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=production.url, timeout=60) as client:
        yield client


def _run_server(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m server` with exactly `env`, expected to exit before it serves anything."""
    return subprocess.run(
        [sys.executable, "-m", "server"], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _start_refused(base_env: dict[str, str], **settings: str) -> subprocess.CompletedProcess[str]:
    """`python -m server` with `settings`, expected to refuse to start before loading anything."""
    return _run_server(
        {**base_env, "MODEL_URI": "models:/never-loaded@champion", "MODEL_LOAD_TIMEOUT": "0", **settings}
    )


def _assert_one_line_refusal(result: subprocess.CompletedProcess[str], reason: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip() == f"error: {reason}"


# "Outside ENVIRONMENT=local it refuses to start with the placeholder secrets of .env.example and
# k8s/secrets.yaml."


def test_the_published_example_key_in_env_example_stops_a_production_server(base_env: dict[str, str]) -> None:
    result = _start_refused(
        base_env, ENVIRONMENT="production", AUTH_ENABLED="true", API_KEYS=shipped_api_keys_line()
    )
    _assert_one_line_refusal(
        result, "API key 'local-admin' is the published example key; make a real one (ENVIRONMENT=production)"
    )


def test_the_published_keys_file_of_k8s_stops_a_production_server(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    keys = tmp_path / "api-keys"
    keys.write_text(shipped_api_keys_file())
    result = _start_refused(base_env, ENVIRONMENT="production", AUTH_ENABLED="true", API_KEYS_FILE=str(keys))
    _assert_one_line_refusal(
        result, "API key 'ops' is the published example key; make a real one (ENVIRONMENT=production)"
    )


def test_placeholder_secrets_stop_a_production_server(base_env: dict[str, str], tmp_path: Path) -> None:
    webhook = _start_refused(
        base_env, ENVIRONMENT="production", MLFLOW_WEBHOOK_SECRET="change-me-webhook-secret"
    )
    assert webhook.returncode == 2
    assert "MLFLOW_WEBHOOK_SECRET still holds its placeholder" in webhook.stderr
    key_file = tmp_path / "jwt-key"
    key_file.write_text("change-me-0123456789abcdef0123456789abcdef")
    jwt_placeholder = _start_refused(
        base_env, ENVIRONMENT="production", JWT_ALGORITHM="HS256", JWT_KEY_FILE=str(key_file)
    )
    _assert_one_line_refusal(
        jwt_placeholder, "JWT_KEY_FILE still holds its placeholder (ENVIRONMENT=production)"
    )
    key_file.write_text("")
    _assert_one_line_refusal(
        _start_refused(base_env, ENVIRONMENT="production", JWT_ALGORITHM="HS256", JWT_KEY_FILE=str(key_file)),
        "JWT_KEY_FILE is empty",
    )


# "Who may call what" (the table), 401 with WWW-Authenticate, 403 without the scope.

ROUTES = [
    ("POST", "/predict", "predict"),
    ("POST", "/batch-predict", "predict"),
    ("POST", "/invocations", "predict"),
    ("GET", "/model/metadata", "predict"),
    ("GET", "/model/features", "predict"),
    ("GET", "/model/versions", "predict"),
    ("GET", "/model/variants", "predict"),
    ("GET", "/model/drift", "predict"),
    ("GET", "/predictions", "admin"),
    ("GET", "/v2", "predict"),
    ("GET", "/v2/models/breast-cancer-classifier", "predict"),
    ("GET", "/v2/models/breast-cancer-classifier/ready", "predict"),
    ("POST", "/v2/models/breast-cancer-classifier/infer", "predict"),
    ("GET", "/v1/models/breast-cancer-classifier", "predict"),
    ("POST", "/v1/models/breast-cancer-classifier:predict", "predict"),
    ("POST", "/model/reload", "admin"),
    ("PUT", "/model/variants", "admin"),
    ("GET", "/metrics", "metrics"),
    ("GET", "/prometheus-metrics", "metrics"),
]


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_each_route_needs_its_scope(
    production: Production, http: httpx.Client, method: str, path: str, scope: str
) -> None:
    anonymous = http.request(method, path)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="registry-serve"'
    wrong = http.request(method, path, headers={"X-API-Key": "not-a-key"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == 'Bearer realm="registry-serve", error="invalid_token"'
    if scope != "predict":
        lacking = http.request(method, path, headers=production.reader())
        assert lacking.status_code == 403
        assert lacking.json()["message"] == f"this credential lacks the {scope!r} scope"
    allowed = http.request(method, path, headers=production.ops(), json=ROW if path == "/predict" else None)
    assert allowed.status_code not in (401, 403, 429), allowed.text


def test_the_log_names_the_caller_by_its_key_name_never_its_credential(
    production: Production, http: httpx.Client
) -> None:
    """README: the log holds "the caller's key name (never a credential)"; reading it takes admin."""
    request_id = f"logged-{secrets.token_hex(6)}"
    headers = {**production.reader(), "X-Request-ID": request_id}
    assert http.post("/predict", json=ROW, headers=headers).status_code == 200
    query = {"request_id": request_id}
    assert http.get("/predictions", params=query, headers=production.reader()).status_code == 403

    def logged() -> list[dict[str, object]]:
        return http.get("/predictions", params=query, headers=production.ops()).json()["predictions"]

    wait_for(lambda: len(logged()) == 1, timeout=30, what="the logged prediction")
    assert logged()[0]["caller"] == "reader"
    stored = b"".join(path.read_bytes() for path in production.folder.glob("predictions.db*"))
    assert production.reader_key.encode() not in stored
    assert digest(production.reader_key).encode() not in stored


@pytest.mark.parametrize(
    "path", ["/health", "/ping", "/docs", "/redoc", "/openapi.json", "/v2/health/live", "/v2/health/ready"]
)
def test_probes_and_docs_stay_open(http: httpx.Client, path: str) -> None:
    assert http.get(path).status_code == 200


def test_liveness_says_nothing_about_the_registry_or_failures(http: httpx.Client) -> None:
    assert set(http.get("/health").json()) == {"status", "model_loaded", "model_version", "uptime_seconds"}


def test_a_jwt_is_accepted_and_its_scopes_apply(production: Production, http: httpx.Client) -> None:
    def token(**claims: object) -> dict[str, str]:
        payload = {"sub": "svc", "exp": time.time() + 60, **claims}
        return {"Authorization": f"Bearer {jwt.encode(payload, production.jwt_key, algorithm='HS256')}"}

    assert http.post("/predict", json=ROW, headers=token(scope="predict")).status_code == 200
    assert http.post("/model/reload", headers=token(scope="predict")).status_code == 403
    for claim in (7, None, [{"scope": "admin"}]):
        response = http.post("/model/reload", headers=token(scope=claim))
        assert response.status_code == 401, (claim, response.text)
        assert response.json()["message"] == "the token's scope claim is not a string or a list of strings"
    assert http.post("/model/reload", headers=token(scp=["predict", "admin"])).status_code == 200
    assert http.post("/model/reload", headers=token(scope="nimda")).status_code == 403
    forged = jwt.encode(
        {"sub": "svc", "exp": time.time() + 60, "scope": "admin"}, "x" * 40, algorithm="HS256"
    )
    assert http.post("/model/reload", headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_failed_credentials_are_limited_per_client_address(
    base_env: dict[str, str], champion_uri: str, tmp_path: Path
) -> None:
    """Counted by the address a trusted proxy names (127.0.0.1 is trusted by default), so one
    guesser does not block its neighbours."""
    settings, keys = production_settings(MODEL_URI=champion_uri, AUTH_FAILURES_PER_MINUTE="5")
    guesser, neighbour = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "203.0.113.8"}
    with (
        api_process(base_env, tmp_path / "api.log", **settings) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        statuses = [
            http.post("/predict", json=ROW, headers={**guesser, "X-API-Key": f"guess-{i}"}).status_code
            for i in range(6)
        ]
        assert statuses == [401] * 5 + [429]
        blocked = http.post("/predict", json=ROW, headers={**guesser, "X-API-Key": keys["reader"]})
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) >= 1
        assert (
            http.post("/predict", json=ROW, headers={**neighbour, "X-API-Key": keys["reader"]}).status_code
            == 200
        )


def test_an_untrusted_peer_cannot_name_another_address(
    base_env: dict[str, str], champion_uri: str, tmp_path: Path
) -> None:
    """With this peer not among FORWARDED_ALLOW_IPS, a guesser rotating X-Forwarded-For is still
    counted by its own address."""
    settings, _ = production_settings(
        MODEL_URI=champion_uri, AUTH_FAILURES_PER_MINUTE="5", FORWARDED_ALLOW_IPS="192.0.2.1"
    )
    with (
        api_process(base_env, tmp_path / "api.log", **settings) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        statuses = [
            http.post(
                "/predict", json=ROW, headers={"X-Forwarded-For": f"203.0.113.{i}", "X-API-Key": "guess"}
            ).status_code
            for i in range(6)
        ]
    assert statuses == [401] * 5 + [429]


def test_failed_credentials_are_counted_across_workers_and_replicas_through_redis(
    base_env: dict[str, str], champion_uri: str, tmp_path: Path
) -> None:
    """Two replicas of two workers each share one Redis: guesses spread over all four processes
    (fresh connections) are counted once, and the first one past the limit is refused wherever it
    lands (each process learns of the block at its first failure past the limit)."""
    settings, _ = production_settings(
        MODEL_URI=champion_uri,
        AUTH_FAILURES_PER_MINUTE="5",
        RATE_LIMIT_REDIS_URL="redis://127.0.0.1:6379/0",
        WORKERS="2",
    )
    guesser = {"X-Forwarded-For": f"198.51.100.{secrets.randbelow(250) + 1}", "X-API-Key": "guess"}
    with (
        api_process(base_env, tmp_path / "a.log", **settings) as first,
        api_process(base_env, tmp_path / "b.log", **settings) as second,
    ):
        statuses = [
            httpx.post(f"{server.url}/predict", json=ROW, headers=guesser).status_code
            for server in [first, second] * 5
        ]
    assert statuses == [401] * 5 + [429] * 5


# "it refuses pickled models": the pickle policy, both ways.


@pytest.fixture
def pickled_model(tmp_path: Path) -> tuple[str, Path]:
    """A registered cloudpickled version whose unpickling touches a marker file (removed here:
    MLflow itself loads the model once while logging it)."""
    marker = tmp_path / "unpickled"
    name = f"pickled-{uuid.uuid4().hex[:8]}"
    register_pickled(name, marker)
    marker.unlink()
    return f"models:/{name}/1", marker


def test_a_pickled_model_is_refused_and_never_unpickled(
    base_env: dict[str, str], pickled_model: tuple[str, Path]
) -> None:
    uri, marker = pickled_model
    settings, _ = production_settings(MODEL_URI=uri, MODEL_LOAD_TIMEOUT="0")
    result = _run_server({**base_env, **settings})
    assert result.returncode == 1
    assert "Deserializing model using pickle is disallowed" in result.stderr
    assert not marker.exists()


def test_a_pickled_model_loads_when_allowed(
    base_env: dict[str, str], pickled_model: tuple[str, Path], tmp_path: Path
) -> None:
    uri, marker = pickled_model
    settings, keys = production_settings(MODEL_URI=uri, ALLOW_PICKLED_MODELS="true")
    with api_process(base_env, tmp_path / "api.log", **settings) as server:
        assert marker.exists()
        answer = httpx.post(f"{server.url}/predict", json=ROW, headers={"X-API-Key": keys["reader"]})
        assert answer.status_code == 200


def test_a_pickled_version_promoted_later_is_refused_and_the_served_one_stays(
    base_env: dict[str, str], client_mlflow: MlflowClient, tmp_path: Path
) -> None:
    name = f"promoted-pickle-{uuid.uuid4().hex[:8]}"
    register_ours(name)
    client_mlflow.set_registered_model_alias(name, "champion", "1")
    marker = tmp_path / "unpickled"
    register_pickled(name, marker)
    marker.unlink()
    settings, keys = production_settings(MODEL_URI=f"models:/{name}@champion")
    with api_process(base_env, tmp_path / "api.log", **settings) as server:
        client_mlflow.set_registered_model_alias(name, "champion", "2")
        outcome = httpx.post(
            f"{server.url}/model/reload", headers={"X-API-Key": keys["ops"]}, timeout=60
        ).json()
        assert (outcome["outcome"], outcome["version"], outcome["previous"]) == ("failed", "2", "1")
        assert "pickle" in outcome["reason"]
        assert httpx.get(f"{server.url}/health").json()["model_version"] == "1"
    assert not marker.exists()


def _register_sklearn(estimator: Any, **options: Any) -> str:
    """An `mlflow.sklearn` version of `estimator` (fitted here), logged with `options`."""
    name = f"sklearn-{uuid.uuid4().hex[:8]}"
    estimator.fit(FEATURES, load_frame()[1])
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            estimator,
            name="model",
            signature=infer_signature(FEATURES, estimator.predict(FEATURES)),
            input_example=FEATURES.head(3),
            registered_model_name=name,
            **options,
        )
    return f"models:/{name}/1"


def test_an_skops_mlflow_sklearn_model_serves_with_pickles_off(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    """MLflow refuses every `mlflow.sklearn` model with its pickle switch off; the server loads an
    skops one with its own allowlist of types (docs/security.md)."""
    estimator = LogisticRegression(max_iter=5000)
    settings, keys = production_settings(MODEL_URI=_register_sklearn(estimator))
    with api_process(base_env, tmp_path / "api.log", **settings) as server:
        answer = httpx.post(f"{server.url}/predict", json=ROW, headers={"X-API-Key": keys["reader"]})
    assert answer.status_code == 200
    assert answer.json()["prediction"] == int(estimator.predict(FEATURES.head(1))[0])


def test_an_skops_model_that_trusts_its_own_callable_is_refused(base_env: dict[str, str]) -> None:
    """The model's MLmodel file lists `_operator.neg` as trusted (MLflow would take its word, with
    its switch on); the server's allowlist does not."""
    estimator = Pipeline(
        [("negate", FunctionTransformer(operator.neg)), ("lr", LogisticRegression(max_iter=5000))]
    )
    uri = _register_sklearn(estimator, skops_trusted_types=["_operator.neg"])
    settings, _ = production_settings(MODEL_URI=uri, MODEL_LOAD_TIMEOUT="0")
    refused = _run_server({**base_env, **settings})
    assert refused.returncode == 1
    assert "contains types that are not trusted: ['_operator.neg']" in refused.stderr


def test_a_pickled_mlflow_sklearn_model_loads_only_with_pickles_allowed(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    """As `mlflow.sklearn.autolog()` stores its models (cloudpickle): refused by default, served
    once allowed."""
    estimator = LogisticRegression(max_iter=5000)
    uri = _register_sklearn(estimator, serialization_format="cloudpickle")
    settings, keys = production_settings(MODEL_URI=uri, MODEL_LOAD_TIMEOUT="0")
    refused = _run_server({**base_env, **settings})
    assert refused.returncode == 1
    assert "Deserializing this model is disallowed" in refused.stderr
    with api_process(base_env, tmp_path / "api.log", **settings, ALLOW_PICKLED_MODELS="true") as server:
        answer = httpx.post(f"{server.url}/predict", json=ROW, headers={"X-API-Key": keys["reader"]})
    assert answer.status_code == 200
    assert answer.json()["prediction"] == int(estimator.predict(FEATURES.head(1))[0])


# "Error responses carry no stack trace and do not echo the request", and no client mistake is a 5xx.

TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=24)
PROPERTY = settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def _without_request_id(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    body.pop("request_id", None)
    return body


def _echoes(value: str, response: httpx.Response, baseline: httpx.Response) -> bool:
    """Whether `value` comes back in `response` though it is not in the answer to a neutral request
    (so that a value which happens to be a word of the usual message does not count)."""
    forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    return any(form and form in response.text and form not in baseline.text for form in forms)


@pytest.fixture
def strict_baselines(production: Production, http: httpx.Client) -> dict[str, httpx.Response]:
    headers = production.reader()
    return {
        "key": http.post("/predict", json={**ROW, "zz-neutral": 1.0}, headers=headers),
        "value": http.post("/predict", json={**ROW, "feature_3": "zz-neutral"}, headers=headers),
        "top": http.post("/batch-predict", json={"records": [ROW], "zz-neutral": 1}, headers=headers),
        "path": http.get("/zz/zz-neutral", headers=headers),
    }


@PROPERTY
@given(text=TEXT, ascii_escapes=st.booleans())
def test_strict_routes_answer_the_same_whatever_the_unknown_text(
    production: Production,
    http: httpx.Client,
    strict_baselines: dict[str, httpx.Response],
    text: str,
    ascii_escapes: bool,
) -> None:
    """An unknown key, a bad value, an extra top-level key or an unknown path gets the very answer a
    neutral one gets: the client's text cannot come back, however it is written."""
    headers = {**production.reader(), "content-type": "application/json"}

    def body(document: object) -> bytes:
        return json.dumps(document, ensure_ascii=ascii_escapes).encode()

    if text in ROW or text == "records":
        return
    answers = {
        "key": http.post("/predict", content=body({**ROW, text: 1.0}), headers=headers),
        "value": http.post("/predict", content=body({**ROW, "feature_3": text}), headers=headers),
        "top": http.post("/batch-predict", content=body({"records": [ROW], text: 1}), headers=headers),
    }
    for kind, answer in answers.items():
        assert answer.status_code == 422, (kind, answer.text)
        assert _without_request_id(answer) == _without_request_id(strict_baselines[kind]), kind
    segment = "".join(c if c.isprintable() and c not in "/?#.%\\" else "_" for c in text)
    path = http.get("/zz/" + segment, headers=headers)
    assert path.status_code == 404
    assert _without_request_id(path) == _without_request_id(strict_baselines["path"])


@pytest.fixture
def invocation_baselines(production: Production, http: httpx.Client) -> dict[str, httpx.Response]:
    return {layout: _invocation(production, http, layout, "zz-neutral") for layout in INVOCATION_LAYOUTS}


INVOCATION_LAYOUTS = (
    "split value",
    "split column",
    "records value",
    "records key",
    "csv value",
    "csv column",
    "parquet value",
    "parquet column",
)


def _invocation(production: Production, http: httpx.Client, layout: str, text: str) -> httpx.Response:
    """An /invocations request in `layout` with `text` where a number or a column name belongs."""
    headers = production.reader()
    values = list(ROW.values())
    if layout.startswith("split"):
        columns = [*NAMES, text] if layout.endswith("column") else NAMES
        row = [*values, 1.0] if layout.endswith("column") else [text, *values[1:]]
        return http.post(
            "/invocations", json={"dataframe_split": {"columns": columns, "data": [row]}}, headers=headers
        )
    if layout.startswith("records"):
        record = {**ROW, text: "x"} if layout.endswith("key") else {**ROW, "feature_1": text}
        return http.post("/invocations", json={"dataframe_records": [record]}, headers=headers)
    frame = pd.DataFrame([ROW])
    frame = frame.astype({"feature_1": object})
    frame.loc[0, "feature_1"] = text if layout.endswith("value") else 1.0
    if layout.endswith("column"):
        frame = frame.rename(columns={"feature_1": text})
    if layout.startswith("csv"):
        return http.post(
            "/invocations",
            content=frame.to_csv(index=False).encode(),
            headers={**headers, "content-type": "text/csv"},
        )
    buffer = io.BytesIO()
    frame.to_parquet(buffer, compression="zstd")
    return http.post(
        "/invocations",
        content=buffer.getvalue(),
        headers={**headers, "content-type": "application/vnd.apache.parquet"},
    )


@PROPERTY
@given(text=TEXT, layout=st.sampled_from(INVOCATION_LAYOUTS))
def test_invocations_never_repeat_what_the_client_sent(
    production: Production,
    http: httpx.Client,
    invocation_baselines: dict[str, httpx.Response],
    text: str,
    layout: str,
) -> None:
    if text in NAMES or text.strip() == "" or (layout.startswith("csv") and any(c in text for c in '\r\n"')):
        return
    answer = _invocation(production, http, layout, text)
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        assert "Traceback" not in answer.text
        assert "stack_trace" not in answer.json()
        assert not _echoes(text, answer, invocation_baselines[layout]), (layout, answer.text)


@pytest.fixture
def header_baselines(production: Production, http: httpx.Client) -> dict[str, httpx.Response]:
    body = json.dumps(ROW).encode()
    return {
        "content-type": http.post(
            "/predict", content=body, headers={**production.reader(), "content-type": "zz/neutral"}
        ),
        "credential": http.post("/predict", content=body, headers={"X-API-Key": "zz-neutral"}),
        "request id": http.post(
            "/predict", json={}, headers={**production.reader(), "X-Request-ID": "zz neutral"}
        ),
    }


@PROPERTY
@given(value=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40))
def test_headers_are_not_echoed(
    production: Production, http: httpx.Client, header_baselines: dict[str, httpx.Response], value: str
) -> None:
    """Content types, credentials and request ids the server does not accept stay out of answers
    (a plain request id of up to 128 characters is echoed by design: it is the client's handle)."""
    body = json.dumps(ROW).encode()
    typed = http.post("/predict", content=body, headers={**production.reader(), "content-type": value})
    if typed.status_code == 415:
        assert _without_request_id(typed) == _without_request_id(header_baselines["content-type"])
    else:
        assert typed.status_code == 200, typed.text
    credential = http.post("/predict", content=body, headers={"X-API-Key": value})
    assert credential.status_code == 401
    assert _without_request_id(credential) == _without_request_id(header_baselines["credential"])
    rid = http.post("/predict", json={}, headers={**production.reader(), "X-Request-ID": value})
    if re.fullmatch(r"[A-Za-z0-9._:\-]{1,128}", value):
        assert rid.json()["request_id"] == rid.headers["x-request-id"] == value
    else:
        assert value not in (rid.json()["request_id"], rid.headers["x-request-id"])
        assert _without_request_id(rid) == _without_request_id(header_baselines["request id"])


# Bounded cost per body.


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/batch-predict", "application/json"),
        ("/invocations", "application/json"),
        ("/invocations", "text/csv"),
        ("/invocations", "application/vnd.apache.parquet"),
    ],
)
def test_bodies_over_max_body_bytes_are_413_on_every_route_and_format(
    production: Production, http: httpx.Client, path: str, content_type: str
) -> None:
    body = b"0" * (10 * 1024 * 1024 + 1)
    answer = http.post(path, content=body, headers={**production.reader(), "content-type": content_type})
    assert answer.status_code == 413
    assert answer.json()["error_code"] == "PAYLOAD_TOO_LARGE"


def test_a_body_of_700k_unknown_keys_is_refused_with_a_4xx(
    production: Production, http: httpx.Client
) -> None:
    record = {**ROW, **{f"k{i}": 0 for i in range(700_000)}}
    body = json.dumps({"records": [record]}).encode()
    answer = http.post(
        "/batch-predict", content=body, headers={**production.reader(), "content-type": "application/json"}
    )
    assert 400 <= answer.status_code < 500
    assert len(answer.content) < 20_000


def test_a_parquet_file_of_millions_of_rows_is_refused_before_it_is_decoded(
    production: Production, http: httpx.Client
) -> None:
    """The review's bomb: a small zstd file of 20 million constant rows (dictionary-encoded)."""
    block = pa.table({name: np.zeros(200_000) for name in NAMES})
    buffer = io.BytesIO()
    with pq.ParquetWriter(buffer, block.schema, compression="zstd") as writer:
        for _ in range(100):
            writer.write_table(block)
    assert len(buffer.getvalue()) < 4 * 1024 * 1024  # well within MAX_BODY_BYTES
    answer = http.post(
        "/invocations",
        content=buffer.getvalue(),
        headers={**production.reader(), "content-type": "application/vnd.apache.parquet"},
    )
    assert answer.status_code == 422
    assert "rows" in answer.json()["message"]


# Webhooks: "MLflow's HMAC signature, a fresh timestamp and an unseen delivery id".


WEBHOOK_BODY = json.dumps({"entity": "model_version", "action": "created", "data": {}}).encode()


def _deliver(
    production: Production,
    http: httpx.Client,
    *,
    timestamp: str | None = None,
    signature: str | None = None,
    delivery: str | None = None,
) -> httpx.Response:
    body = WEBHOOK_BODY
    delivery = delivery or uuid.uuid4().hex
    timestamp = timestamp or str(int(time.time()))
    headers = {
        SIGNATURE_HEADER: signature or sign(production.webhook_secret, delivery, timestamp, body),
        TIMESTAMP_HEADER: timestamp,
        DELIVERY_ID_HEADER: delivery,
        "content-type": "application/json",
    }
    return http.post("/webhooks/mlflow", content=body, headers=headers)


def test_webhook_deliveries_are_verified(production: Production, http: httpx.Client) -> None:
    delivery = uuid.uuid4().hex
    assert _deliver(production, http, delivery=delivery).status_code == 200
    replay = _deliver(production, http, delivery=delivery)
    assert (replay.status_code, replay.json()["error_code"]) == (401, "INVALID_DELIVERY")
    assert _deliver(production, http, timestamp=str(int(time.time()) - 3600)).status_code == 401
    assert _deliver(production, http, timestamp="nan").status_code == 401
    assert _deliver(production, http, signature="v1,AAAA").status_code == 401


def test_a_non_ascii_signature_is_refused_not_a_500(production: Production) -> None:
    """httpx refuses to send non-ASCII header values, so this one goes over a raw socket."""
    import socket

    body = b"{}"
    host, port = "127.0.0.1", production.server.port
    request = (
        b"POST /webhooks/mlflow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n".encode()
        + f"{TIMESTAMP_HEADER}: {int(time.time())}\r\n{DELIVERY_ID_HEADER}: d\r\n".encode()
        + SIGNATURE_HEADER.encode()
        + ": v1,\xe9\xe9\r\n\r\n".encode("latin-1")
        + body
    )
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(request)
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.1 401 Unauthorized"


# "What is logged": not keys, tokens, secrets or request bodies.


def test_nothing_secret_or_sent_reaches_the_log(production: Production, http: httpx.Client) -> None:
    sentinel = 0.123456789123
    token = jwt.encode({"sub": "svc", "exp": time.time() + 60, "scope": "predict"}, production.jwt_key)
    http.post("/predict", json={**ROW, "feature_7": sentinel}, headers={"Authorization": f"Bearer {token}"})
    http.post("/predict", json={**ROW, "feature_7": "secret-value-xyz"}, headers=production.reader())
    http.post("/predict", json=ROW, headers={"X-API-Key": production.ops_key[::-1]})
    # MLflow's schema enforcement logs the columns it drops: the request's own names.
    dropped = http.post(
        "/invocations",
        json={"dataframe_records": [{**ROW, "zz-secret-column": "x"}]},
        headers=production.reader(),
    )
    assert dropped.status_code == 200
    delivery = uuid.uuid4().hex
    timestamp = str(int(time.time()))
    signature = sign(production.webhook_secret, delivery, timestamp, WEBHOOK_BODY)
    assert _deliver(production, http, delivery=delivery, timestamp=timestamp).status_code == 200
    log = production.server.log()
    for secret in (
        production.reader_key,
        production.ops_key,
        production.ops_key[::-1],
        production.jwt_key,
        production.webhook_secret,
        token,
        signature.split(",", 1)[1],
    ):
        assert secret not in log
    assert str(sentinel) not in log
    assert "secret-value-xyz" not in log
    assert "zz-secret-column" not in log
    assert "mlflow.models.utils logged a message while serving this request, withheld" in log


def test_a_failing_prediction_log_puts_neither_its_password_nor_features_in_the_log(
    base_env: dict[str, str], champion_uri: str, tmp_path: Path
) -> None:
    """docs/security.md: a failed write puts neither features nor the URL's password in the log,
    and the log's writer process gets the URL through its pipe, not on its command line."""
    password = secrets.token_urlsafe(24)
    sentinel = 0.987654321987
    settings, keys = production_settings(
        MODEL_URI=champion_uri,
        # Nothing listens there: every attempt to prepare or write the log fails.
        PREDICTION_LOG_URL=f"postgresql://registry:{password}@127.0.0.1:{free_port()}/predictions",
    )
    with (
        api_process(base_env, tmp_path / "api.log", **settings) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        headers = {"X-API-Key": keys["reader"]}
        assert http.post("/predict", json={**ROW, "feature_7": sentinel}, headers=headers).status_code == 200
        wait_for(lambda: "could not be written" in server.log(), timeout=30, what="a failed write in the log")
        log = server.log()
        assert server.process is not None
        writers = [
            " ".join(child.cmdline())
            for child in psutil.Process(server.process.pid).children(recursive=True)
            if WRITER_MODULE in " ".join(child.cmdline())
        ]
    assert len(writers) == 1
    assert password not in writers[0]
    assert "cannot be prepared yet" in log
    assert password not in log
    assert str(sentinel) not in log


# "Who may call what" over gRPC: the same credentials (metadata), the same scopes, probes open.

GRPC_METHOD = "/inference.GRPCInferenceService/{}"


def _grpc_call(production: Production, method: str, request: Any, metadata: tuple = ()) -> tuple[Any, Any]:
    """One unary call to the production server's gRPC port: (response, call) or raises grpc.RpcError."""
    request_class, response_class = messages.METHODS[method]
    with grpc.insecure_channel(f"127.0.0.1:{production.grpc_port}") as channel:
        stub = channel.unary_unary(
            GRPC_METHOD.format(method),
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        return stub.with_call(request, metadata=metadata, timeout=30)


def _infer_request() -> Any:
    request = messages.ModelInferRequest(model_name="breast-cancer-classifier")
    tensor = request.inputs.add(name="input-0", datatype="FP64", shape=[1, len(NAMES)])
    tensor.contents.fp64_contents.extend(ROW.values())
    return request


@pytest.mark.parametrize("method", ["ModelInfer", "ModelMetadata", "ModelReady", "ServerMetadata"])
def test_grpc_methods_need_the_predict_scope(production: Production, method: str) -> None:
    request = (
        _infer_request()
        if method == "ModelInfer"
        else messages.METHODS[method][0](
            **({} if method == "ServerMetadata" else {"name": "breast-cancer-classifier"})
        )
    )
    for metadata in ((), (("x-api-key", "not-a-key"),), (("authorization", "Bearer not-a-key"),)):
        with pytest.raises(grpc.RpcError) as refused:
            _grpc_call(production, method, request, metadata)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    for metadata in (
        (("x-api-key", production.reader_key),),
        (("authorization", f"Bearer {production.ops_key}"),),
    ):
        _grpc_call(production, method, request, metadata)
    claims = {"sub": "svc", "exp": time.time() + 60, "scope": "metrics"}
    lacking = jwt.encode(claims, production.jwt_key, algorithm="HS256")
    with pytest.raises(grpc.RpcError) as forbidden:
        _grpc_call(production, method, request, (("authorization", f"Bearer {lacking}"),))
    assert forbidden.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert forbidden.value.details() == "this credential lacks the 'predict' scope"


def test_an_anonymous_grpc_message_is_refused_before_it_is_read(production: Production) -> None:
    """Credentials first: an anonymous caller's bytes are never parsed (a malformed message is
    UNAUTHENTICATED, not INVALID_ARGUMENT)."""
    with grpc.insecure_channel(f"127.0.0.1:{production.grpc_port}") as channel:
        call = channel.unary_unary(
            GRPC_METHOD.format("ModelInfer"), request_serializer=None, response_deserializer=None
        )
        with pytest.raises(grpc.RpcError) as refused:
            call(b"\xff\xff not a message", timeout=30)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_an_authenticated_malformed_grpc_message_is_invalid_argument(production: Production) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{production.grpc_port}") as channel:
        call = channel.unary_unary(
            GRPC_METHOD.format("ModelInfer"), request_serializer=None, response_deserializer=None
        )
        with pytest.raises(grpc.RpcError) as refused:
            call(b"\xff\xff not a message", metadata=(("x-api-key", production.reader_key),), timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == "the message is not a valid ModelInferRequest"


def test_a_shape_is_bounded_before_it_is_multiplied(production: Production, http: httpx.Client) -> None:
    """A shape of thousands of huge dimensions is refused by its number of dimensions, before any
    product (multiplied, it cost seconds of CPU, and its message was too long for Python to print)."""
    tensor = {"name": "x", "datatype": "FP64", "shape": [2**62] * 20_000, "data": [1.0]}
    response = http.post(
        "/v2/models/breast-cancer-classifier/infer", json={"inputs": [tensor]}, headers=production.reader()
    )
    assert response.status_code == 422
    assert response.json() == {"error": "input at position 0: shape has 20000 dimensions; at most 8"}
    tensor["shape"] = [2**62, 2**62]
    response = http.post(
        "/v2/models/breast-cancer-classifier/infer", json={"inputs": [tensor]}, headers=production.reader()
    )
    assert response.json() == {"error": "input at position 0: a dimension of its shape is over 16777216"}


def test_grpc_probes_stay_open(production: Production) -> None:
    assert _grpc_call(production, "ServerLive", messages.ServerLiveRequest())[0].live
    assert _grpc_call(production, "ServerReady", messages.ServerReadyRequest())[0].ready
    with grpc.insecure_channel(f"127.0.0.1:{production.grpc_port}") as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(f"127.0.0.1:{production.grpc_port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        (listing,) = list(stub.ServerReflectionInfo(requests, timeout=10))
    assert "inference.GRPCInferenceService" in {s.name for s in listing.list_services_response.service}


def test_grpc_answers_carry_the_request_id_and_version_and_are_logged_by_key_name(
    production: Production, http: httpx.Client, champion_version: str
) -> None:
    request_id = f"grpc-{secrets.token_hex(6)}"
    metadata = (("x-api-key", production.reader_key), ("x-request-id", request_id))
    response, call = _grpc_call(production, "ModelInfer", _infer_request(), metadata)
    trailing = dict(call.trailing_metadata())
    assert trailing["x-request-id"] == request_id
    assert trailing["x-model-version"] == champion_version
    assert trailing["x-model-variant"] == "champion"
    assert response.model_version == champion_version
    query = {"request_id": request_id}

    def logged() -> list[dict[str, object]]:
        return http.get("/predictions", params=query, headers=production.ops()).json()["predictions"]

    wait_for(lambda: len(logged()) == 1, timeout=30, what="the logged gRPC prediction")
    (row,) = logged()
    assert row["caller"] == "reader"
    assert row["route"] == GRPC_METHOD.format("ModelInfer")


def test_every_worker_serves_grpc(production: Production) -> None:
    """WORKERS=2: each worker listens on GRPC_PORT itself (SO_REUSEPORT), as on the HTTP port."""
    assert production.server.process is not None
    workers = psutil.Process(production.server.process.pid).children()
    listening = [
        process.pid
        for process in workers
        if any(
            c.status == psutil.CONN_LISTEN and c.laddr.port == production.grpc_port
            for c in process.net_connections("tcp")
        )
    ]
    assert len(listening) == 2
