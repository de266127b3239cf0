"""Champion and challenger in process: what `tests/e2e/test_challenger.py` does not cover.

1. Routing: `bucket_of` is BLAKE2b of the key alone (the same in any process), spreads keys evenly,
   and raising the share moves only champion keys (`VariantRouter` over real `ModelStore`s).
2. No challenger: every answer names the champion; GET /model/variants is "off"; PUT is 409.
3. PUT /model/variants validation: 4xx, the field named, the client's value never echoed back.
4. A real challenger from the test registry: split stickiness by `X-Routing-Key` and by the
   authenticated caller, random spread without a key, shadow and 0% answering with the champion,
   and per-variant request counts that match the answers given.
5. Shadow never changes or fails the answer: a burst against a queue of one row (drops counted),
   and a challenger that passes the gate but fails on every real row.
6. The policy file that PUT shares between workers (`SplitPolicyHolder`).
7. The challenger's settings.
8. `histogram_quantile` against hand-computed values.

Nothing of MLflow is mocked: models are registered in, and loaded from, the session's tracking
server. The process-wide Prometheus registry is shared by every app of the session, and series are
labelled by variant and version only, so every count is read as a before/after difference.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from pydantic import ValidationError
from starlette.types import ASGIApp

from model_wrapper import contract
from registry_scripts.tracking_server import TrackingServer
from server.app import create_app
from server.edge.credentials import digest
from server.inference.shadow import ShadowCopy, score_copies
from server.inference.split_policy import SplitPolicy, SplitPolicyHolder
from server.inference.variants import BUCKETS, VariantRouter, bucket_of
from server.live.loaded_model import LoadedModel
from server.live.model_store import CHALLENGER, CHAMPION, ModelStore
from server.observe.variant_stats import Buckets, histogram_quantile
from server.services import Services
from server.settings import ServerSettings, describe_invalid_settings
from tests.helpers import wait_for
from tests.registry import CLASS_NAMES, FEATURES, champion_model, register_ours
from tests.server.conftest import record
from tests.server.metrics_text import counted, sample

ROW = record(FEATURES)
LOAD_TIMEOUT = 90.0  # a challenger's download and load from the test registry, with room to spare
CHALLENGER_SOURCE_MESSAGE = (
    "CHALLENGER_ALIAS needs MODEL_URI to name a registered model (models:/NAME@ALIAS or "
    "models:/NAME/VERSION), or CHALLENGER_URI"
)
SHADOW_OUTCOMES = ("scored", "dropped", "failed", "skipped")

# A models-from-code challenger that answers its own (all-zero) input example, so it passes the
# gate, and raises on any real row: broken only when it scores traffic.
FAILS_ON_REAL_ROWS = textwrap.dedent(
    """
    import pandas as pd
    from mlflow.models import set_model
    from mlflow.pyfunc import PythonModel


    class FailsOnRealRows(PythonModel):
        def predict(self, context, model_input, params=None):
            if (model_input.to_numpy() != 0).any():
                raise RuntimeError("this version fails on real rows")
            return pd.DataFrame({"prediction": [0] * len(model_input)})


    set_model(FailsOnRealRows())
    """
)


# --- helpers -------------------------------------------------------------------------------------


def _expected_bucket(key: str) -> int:
    """The README's rule, written out here: BLAKE2b (8-byte digest) of the UTF-8 key, big-endian,
    modulo 10,000."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big") % 10_000


def _expected_variant(key: str, percent: float) -> str:
    return CHALLENGER if _expected_bucket(key) < round(percent * 100) else CHAMPION


def _variants(client: TestClient, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = client.get("/model/variants", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _variant(document: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [v for v in document["variants"] if v["variant"] == name]
    return found


def _serving(client: TestClient, version: str, headers: dict[str, str] | None = None) -> bool:
    challenger = _variant(_variants(client, headers), CHALLENGER)
    return challenger["state"] == "serving" and challenger["version"] == version


def _await_challenger(client: TestClient, version: str, headers: dict[str, str] | None = None) -> None:
    wait_for(
        lambda: _serving(client, version, headers), LOAD_TIMEOUT, f"challenger version {version} serving"
    )


def _requests_by_variant(document: dict[str, Any]) -> dict[str, int]:
    return {v["variant"]: v["stats"]["requests"] for v in document["variants"] if v["stats"] is not None}


def _shadow_requests(document: dict[str, Any]) -> dict[str, int]:
    shadow = document["shadow"]
    return dict.fromkeys(SHADOW_OUTCOMES, 0) if shadow is None else shadow["requests"]


def _difference(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before.get(key, 0) for key in after}


def _answer(client: TestClient, key: str | None = None, headers: dict[str, str] | None = None) -> str:
    """POST /predict (with `key` as X-Routing-Key); the variant that answered, checked against
    the version it names."""
    sent = dict(headers or {})
    if key is not None:
        sent["X-Routing-Key"] = key
    response = client.post("/predict", json=ROW, headers=sent)
    assert response.status_code == 200, response.text
    variant = response.headers["x-model-variant"]
    assert response.headers["x-model-version"] == response.json()["model_version"]
    assert response.headers["x-model-version"] == {CHAMPION: "1", CHALLENGER: "2"}[variant]
    return variant


def _services(client: TestClient) -> Services:
    services = client.app.state.services  # type: ignore[attr-defined]
    assert isinstance(services, Services)
    return services


def _drain_shadow(client: TestClient) -> None:
    """Until every copy offered so far is scored (or failed): none waits in the queue, and the
    shadow thread (one worker, first in first out) has finished what the scorer handed it. The
    scorer hands copies over in the same step it takes them from the queue."""
    services = _services(client)
    assert services.challenger is not None
    shadow = services.challenger.shadow
    wait_for(lambda: shadow.waiting == 0, 30, "the shadow queue empty")
    services.shadow_thread.submit(lambda: None).result(timeout=30)


def _challenger_app(tracking_server: TrackingServer, name: str, **options: Any) -> TestClient:
    """An app serving `name`@champion with `name`@challenger beside it (CHALLENGER_ALIAS)."""
    unknown = set(options) - set(ServerSettings.model_fields)
    assert not unknown, f"not settings (ServerSettings would ignore them): {sorted(unknown)}"
    settings = ServerSettings(
        model_uri=f"models:/{name}@champion",
        mlflow_tracking_uri=tracking_server.url,
        challenger_alias="challenger",
        model_poll_seconds=0.2,
        **options,
    )
    return TestClient(create_app(settings), raise_server_exceptions=False)


async def _burst(app: ASGIApp, count: int) -> list[httpx.Response]:
    """`count` /predict requests at once, on the app's own event loop."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as http:
        return list(
            await asyncio.gather(
                *(
                    http.post("/predict", json=ROW, headers={"X-Routing-Key": f"burst-{i}"})
                    for i in range(count)
                )
            )
        )


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def variant_model(client_mlflow: MlflowClient) -> str:
    """A registered model of this module's own: v1 (logistic regression) on @champion, v2 (random
    forest) on @challenger. No test here moves an alias."""
    name = champion_model(client_mlflow, "variants-inproc")
    assert register_ours(name, "random_forest") == "2"
    client_mlflow.set_registered_model_alias(name, "challenger", "2")
    return name


@pytest.fixture
def split_client(tracking_server: TrackingServer, variant_model: str) -> Iterator[TestClient]:
    """Split at 50%, the challenger loaded."""
    with _challenger_app(tracking_server, variant_model, challenger_percent=50) as client:
        _await_challenger(client, "2")
        yield client


@pytest.fixture
def router_stores(loaded_champion: LoadedModel) -> Iterator[tuple[ModelStore, ModelStore]]:
    """The same loaded model in a champion store and a challenger store. The challenger store is
    retired afterwards (never closed: that would remove the shared model's files), so its
    `model_info` series does not outlive the test."""
    champion = ModelStore(loaded_champion)
    challenger = ModelStore(loaded_champion, variant=CHALLENGER)
    yield champion, challenger
    challenger.retire()


# --- 1. routing ----------------------------------------------------------------------------------


def test_bucket_of_is_blake2b_of_the_key_alone() -> None:
    keys = ["", "user-1", "customer-42", "ключ ✓", "a" * 1000, "X-Routing-Key"]
    assert [bucket_of(key) for key in keys] == [_expected_bucket(key) for key in keys]
    assert bucket_of("user-1") == bucket_of("user-1")


def test_bucket_of_is_the_same_in_other_processes(repo_root: Path) -> None:
    """Python's own `hash` of a string changes with each process's seed; the buckets must not."""
    keys = [f"user-{i}" for i in range(200)]
    script = (
        "import json, sys\n"
        "from server.inference.variants import bucket_of\n"
        "keys = json.loads(sys.stdin.read())\n"
        "print(json.dumps({'buckets': [bucket_of(k) for k in keys], 'hash': hash(keys[0])}))\n"
    )
    seen = []
    for seed in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps(keys),
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=repo_root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        seen.append(json.loads(result.stdout))
    assert seen[0]["hash"] != seen[1]["hash"]  # the two processes do hash differently
    expected = [bucket_of(key) for key in keys]
    assert seen[0]["buckets"] == expected
    assert seen[1]["buckets"] == expected


def test_buckets_spread_ten_thousand_keys_evenly() -> None:
    buckets = np.array([bucket_of(f"customer-{i}") for i in range(10_000)])
    assert buckets.min() >= 0
    assert buckets.max() < BUCKETS
    per_decile = np.bincount(buckets // (BUCKETS // 10), minlength=10)
    # 1,000 expected per decile; the binomial standard deviation is 30: 150 is five of them.
    assert per_decile.tolist() == pytest.approx([1000] * 10, abs=150), per_decile.tolist()


def test_raising_the_share_moves_only_champion_keys(router_stores: tuple[ModelStore, ModelStore]) -> None:
    champion, challenger = router_stores
    policy = SplitPolicyHolder(SplitPolicy("split", 20))
    router = VariantRouter(champion, challenger, policy)
    keys = [f"customer-{i}" for i in range(10_000)]

    at_20 = {key: router.choose(key).variant for key in keys}
    assert at_20 == {key: _expected_variant(key, 20) for key in keys}
    on_challenger_20 = {key for key, variant in at_20.items() if variant == CHALLENGER}
    assert 0.18 <= len(on_challenger_20) / len(keys) <= 0.22
    assert router.challenger_share() == 20

    policy.set(SplitPolicy("split", 30))
    at_30 = {key: router.choose(key).variant for key in keys}
    on_challenger_30 = {key for key, variant in at_30.items() if variant == CHALLENGER}
    assert on_challenger_20 <= on_challenger_30  # no key went back to the champion
    moved = on_challenger_30 - on_challenger_20
    assert moved == {key for key in keys if 2000 <= _expected_bucket(key) < 3000}  # only those it must
    assert 0.08 <= len(moved) / len(keys) <= 0.12
    assert router.challenger_share() == 30

    served = router.choose(next(iter(moved)))
    assert served.model is challenger.current
    assert served.labels == (CHALLENGER, challenger.current.source.version)

    policy.set(SplitPolicy("shadow", 30))
    assert {router.choose(key).variant for key in on_challenger_30} == {CHAMPION}
    assert router.challenger_share() == 0

    policy.set(SplitPolicy("split", 30))
    challenger.retire()  # the challenger's alias removed: every key goes to the champion
    assert {router.choose(key).variant for key in on_challenger_30} == {CHAMPION}
    assert router.challenger_share() == 0


# --- 2. no challenger ----------------------------------------------------------------------------


def test_without_a_challenger_every_answer_names_the_champion(
    client: TestClient, loaded_champion: LoadedModel
) -> None:
    version = loaded_champion.source.version
    assert version
    split = {"dataframe_split": {"columns": list(ROW), "data": [list(ROW.values())]}}
    answers = [
        client.post("/predict", json=ROW),
        client.post("/predict", json=ROW, headers={"X-Routing-Key": "someone"}),
        client.post("/batch-predict", json={"records": [ROW, record(FEATURES, 1)]}),
        client.post("/invocations", json=split),
    ]
    for response in answers:
        assert response.status_code == 200, response.text
        assert response.headers["x-model-variant"] == CHAMPION
        assert response.headers["x-model-version"] == version


def test_without_a_challenger_variants_is_off_with_the_champion_alone(
    client: TestClient, loaded_champion: LoadedModel
) -> None:
    document = _variants(client)
    assert (document["mode"], document["percent"], document["configured"], document["shadow"]) == (
        "off",
        0.0,
        None,
        None,
    )
    (champion,) = document["variants"]
    assert (champion["variant"], champion["state"], champion["version"]) == (
        CHAMPION,
        "serving",
        loaded_champion.source.version,
    )


def test_without_a_challenger_put_is_409(client: TestClient) -> None:
    response = client.put("/model/variants", json={"percent": 50})
    assert response.status_code == 409
    assert response.json() == {
        "error_code": "NO_CHALLENGER",
        "message": "no challenger is configured: set CHALLENGER_ALIAS or CHALLENGER_URI",
        "request_id": response.headers["x-request-id"],
    }
    assert _variants(client)["mode"] == "off"


# --- 3. PUT validation ---------------------------------------------------------------------------

MARKER = "zq7-marker"


def _put(client: TestClient, body: bytes) -> httpx.Response:
    response = client.put("/model/variants", content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    return response


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"percent": 101}', "Input should be less than or equal to 100"),
        (b'{"percent": -0.5}', "Input should be greater than or equal to 0"),
        (b'{"percent": 1e300}', "Input should be less than or equal to 100"),
    ],
    ids=["101", "negative", "1e300"],
)
def test_put_refuses_a_percent_out_of_range_naming_the_field(
    client: TestClient, body: bytes, message: str
) -> None:
    response = _put(client, body)
    assert response.status_code == 422
    assert response.json() == {
        "error_code": "INVALID_INPUT",
        "message": f"body.percent: {message}",
        "details": [{"field": "body.percent", "message": message}],
        "request_id": response.headers["x-request-id"],
    }
    assert "1e300" not in response.text
    assert "1e+300" not in response.text


def test_put_refuses_an_unknown_mode_without_echoing_it(client: TestClient) -> None:
    response = _put(client, json.dumps({"mode": f"sideways-{MARKER}"}).encode())
    assert response.status_code == 422
    assert response.json() == {
        "error_code": "INVALID_INPUT",
        "message": "body.mode: Input should be 'split' or 'shadow'",
        "details": [{"field": "body.mode", "message": "Input should be 'split' or 'shadow'"}],
        "request_id": response.headers["x-request-id"],
    }
    assert MARKER not in response.text


def test_put_refuses_an_unknown_field_without_echoing_its_name(client: TestClient) -> None:
    """errors.Problem: a key the client made up is named by position, never quoted back."""
    response = _put(client, json.dumps({f"extra-{MARKER}": 1}).encode())
    assert response.status_code == 422
    unknown = "unknown field: only the documented fields are accepted"
    assert response.json() == {
        "error_code": "INVALID_INPUT",
        "message": f"body: {unknown}",
        "details": [{"field": "body", "message": unknown}],
        "request_id": response.headers["x-request-id"],
    }
    assert MARKER not in response.text


def test_put_refuses_a_body_that_is_not_json(client: TestClient) -> None:
    response = _put(client, f"percent = 50 {MARKER}".encode())
    assert response.status_code == 422
    body = response.json()
    assert body["error_code"] == "INVALID_INPUT"
    assert body["message"].endswith("JSON decode error")
    assert body["request_id"] == response.headers["x-request-id"]
    assert MARKER not in response.text


# --- 4. a real challenger ------------------------------------------------------------------------


def test_a_version_in_an_open_inference_path_names_its_variant(
    split_client: TestClient, variant_model: str
) -> None:
    """README: on /v2, a version names a variant: the champion's (v1) or the challenger's (v2),
    whatever the split would choose."""
    tensor = {"name": "input-0", "datatype": "FP64", "shape": [1, len(ROW)], "data": [list(ROW.values())]}
    assert split_client.get(f"/v2/models/{variant_model}").json()["versions"] == ["1", "2"]
    for version, variant in (("1", CHAMPION), ("2", CHALLENGER)):
        for _ in range(5):
            response = split_client.post(
                f"/v2/models/{variant_model}/versions/{version}/infer", json={"inputs": [tensor]}
            )
            assert response.status_code == 200, response.text
            assert response.headers["x-model-variant"] == variant
            assert response.json()["model_version"] == version


def test_split_keeps_each_routing_key_on_one_variant_and_counts_each_answer(split_client: TestClient) -> None:
    document = _variants(split_client)
    before, shadow_before = _requests_by_variant(document), _shadow_requests(document)
    given = {CHAMPION: 0, CHALLENGER: 0}
    keys = [f"key-{i}" for i in range(40)]
    for key in keys:
        answers = {_answer(split_client, key) for _ in range(3)}
        assert answers == {_expected_variant(key, 50)}, key
        given[answers.pop()] += 3
    assert given[CHAMPION] > 0
    assert given[CHALLENGER] > 0
    unkeyed = [_answer(split_client) for _ in range(200)]  # no key: a random bucket per request
    assert set(unkeyed) == {CHAMPION, CHALLENGER}
    for variant in unkeyed:
        given[variant] += 1
    _drain_shadow(split_client)
    document = _variants(split_client)
    assert _difference(_requests_by_variant(document), before) == given
    assert set(_difference(_shadow_requests(document), shadow_before).values()) == {0}  # split copies nothing


def test_a_pinned_challenger_uri_is_loaded_once_and_answers_its_share(
    tracking_server: TrackingServer, variant_model: str
) -> None:
    """CHALLENGER_URI naming a version, not an alias: loaded at start, nothing to follow."""
    pinned = f"models:/{variant_model}/2"
    with _challenger_app(
        tracking_server, variant_model, challenger_uri=pinned, challenger_percent=50
    ) as client:
        _await_challenger(client, "2")
        challenger = _variant(_variants(client), CHALLENGER)
        assert (challenger["model_uri"], challenger["alias"]) == (pinned, None)
        keys = [f"pinned-{i}" for i in range(60)]
        assert [_answer(client, key) for key in keys] == [_expected_variant(key, 50) for key in keys]


def test_split_at_zero_percent_sends_every_key_to_the_champion(split_client: TestClient) -> None:
    keys = [f"key-{i}" for i in range(40)]
    on_challenger = [key for key in keys if _expected_variant(key, 50) == CHALLENGER]
    assert on_challenger
    response = split_client.put("/model/variants", json={"percent": 0})
    assert response.status_code == 200, response.text
    document = response.json()
    assert (document["mode"], document["percent"]) == ("split", 0.0)
    assert document["configured"] == {"mode": "split", "percent": 50.0}  # what a restart goes back to
    before = _requests_by_variant(_variants(split_client))
    assert {_answer(split_client, key) for key in on_challenger} == {CHAMPION}
    assert {_answer(split_client) for _ in range(50)} == {CHAMPION}
    after = _requests_by_variant(_variants(split_client))
    assert _difference(after, before) == {CHAMPION: len(on_challenger) + 50, CHALLENGER: 0}
    # A refused change leaves the policy as it was.
    assert split_client.put("/model/variants", json={"percent": 101}).status_code == 422
    assert split_client.put("/model/variants", json={"mode": "sideways"}).status_code == 422
    assert (_variants(split_client)["mode"], _variants(split_client)["percent"]) == ("split", 0.0)


def test_shadow_answers_with_the_champion_and_counts_the_copies(split_client: TestClient) -> None:
    keys = [f"key-{i}" for i in range(40)]
    response = split_client.put("/model/variants", json={"mode": "shadow"})
    assert response.status_code == 200, response.text
    assert (response.json()["mode"], response.json()["percent"]) == ("shadow", 50.0)
    document = _variants(split_client)
    assert document["shadow"] is not None
    assert document["shadow"]["version"] == "2"
    shadow_before, requests_before = _shadow_requests(document), _requests_by_variant(document)
    compared_before = document["shadow"]["rows_compared"]

    assert {_answer(split_client, key) for key in keys} == {CHAMPION}
    # A request MLflow's own parsers read (CSV) has no rows to copy: counted as skipped.
    csv = pd.DataFrame([ROW]).to_csv(index=False).encode()
    invocation = split_client.post("/invocations", content=csv, headers={"content-type": "text/csv"})
    assert invocation.status_code == 200, invocation.text
    assert invocation.headers["x-model-variant"] == CHAMPION

    expected = {"scored": len(keys), "dropped": 0, "failed": 0, "skipped": 1}
    wait_for(
        lambda: _difference(_shadow_requests(_variants(split_client)), shadow_before) == expected,
        30,
        "every copy scored",
    )
    _drain_shadow(split_client)  # and no more than those
    document = _variants(split_client)
    assert _difference(_shadow_requests(document), shadow_before) == expected
    assert document["shadow"]["rows_compared"] - compared_before == len(keys)  # one row per request
    assert _difference(_requests_by_variant(document), requests_before) == {
        CHAMPION: len(keys) + 1,
        CHALLENGER: 0,
    }


def _caller_names() -> tuple[str, str]:
    """Two API key names, the first in the challenger's half of the buckets, the second not."""
    names = [f"caller-{i}" for i in range(100)]
    on_challenger = next(n for n in names if _expected_variant(n, 50) == CHALLENGER)
    on_champion = next(n for n in names if _expected_variant(n, 50) == CHAMPION)
    return on_challenger, on_champion


def test_the_authenticated_caller_is_the_routing_key(
    tracking_server: TrackingServer, variant_model: str
) -> None:
    challenger_caller, champion_caller = _caller_names()
    keys = {challenger_caller: "challenger-caller-key-0123", champion_caller: "champion-caller-key-4567"}
    api_keys = ",".join(f"{name}:{digest(key)}:predict" for name, key in keys.items())
    with _challenger_app(
        tracking_server, variant_model, challenger_percent=50, auth_enabled=True, api_keys=api_keys
    ) as client:
        as_challenger = {"X-API-Key": keys[challenger_caller]}
        as_champion = {"X-API-Key": keys[champion_caller]}
        _await_challenger(client, "2", as_challenger)
        assert {_answer(client, headers=as_challenger) for _ in range(20)} == {CHALLENGER}
        assert {_answer(client, headers=as_champion) for _ in range(20)} == {CHAMPION}
        # An explicit X-Routing-Key still decides over the caller.
        assert _answer(client, champion_caller, headers=as_challenger) == CHAMPION
        assert _answer(client, challenger_caller, headers=as_champion) == CHALLENGER
        # Changing the share is an admin's: a predict-only key may read it, not change it.
        assert client.put("/model/variants", json={"percent": 0}, headers=as_challenger).status_code == 403


# --- 5. shadow never changes or fails the answer -------------------------------------------------


def test_a_full_shadow_queue_drops_copies_never_answers(
    tracking_server: TrackingServer, variant_model: str
) -> None:
    """A challenger that cannot keep up: the server's own shadow thread is kept busy (as by a slow
    challenger) while a burst of requests arrives at once. With SHADOW_QUEUE_ROWS=1 the queue holds
    one single-row copy and the scorer one more; every other copy is dropped and counted, and no
    answer waits for the shadow."""
    sent = 64
    with _challenger_app(
        tracking_server, variant_model, challenger_mode="shadow", shadow_queue_rows=1
    ) as client:
        _await_challenger(client, "2")
        before = _shadow_requests(_variants(client))
        services = _services(client)
        busy = threading.Event()
        services.shadow_thread.submit(busy.wait, LOAD_TIMEOUT)
        try:
            assert client.portal is not None
            responses = client.portal.call(_burst, client.app, sent)
            assert [r.status_code for r in responses] == [200] * sent
            assert {(r.headers["x-model-variant"], r.headers["x-model-version"]) for r in responses} == {
                (CHAMPION, "1")
            }
            # Counted at once, while the shadow thread is still busy: at most two copies kept.
            while_busy = _difference(_shadow_requests(_variants(client)), before)
            assert while_busy["scored"] == 0, while_busy
            assert sent - 2 <= while_busy["dropped"] <= sent - 1, while_busy
        finally:
            busy.set()

        def accounted() -> bool:
            done = _difference(_shadow_requests(_variants(client)), before)
            return done["scored"] + done["dropped"] == sent

        wait_for(accounted, 30, "every copy scored or dropped")
        # A copy of more rows than the queue may ever hold is dropped even with the queue empty.
        batch = client.post("/batch-predict", json={"records": [ROW, record(FEATURES, 1)]})
        assert batch.status_code == 200, batch.text
        assert batch.headers["x-model-variant"] == CHAMPION
        document = _variants(client)
    done = _difference(_shadow_requests(document), before)
    assert done["dropped"] == while_busy["dropped"] + 1  # the batch; nothing else after the burst
    assert done["scored"] == sent - while_busy["dropped"]
    assert (done["failed"], done["skipped"]) == (0, 0)
    assert document["shadow"]["waiting"] == 0


def test_copies_left_for_a_replaced_challenger_version_are_skipped_not_scored(
    client: TestClient, loaded_champion: LoadedModel
) -> None:
    """README: copies left for a challenger version that has since been replaced count as skipped."""
    assert loaded_champion.runtime is not None
    rows = FEATURES.head(3).to_numpy(dtype=np.float64)
    answer = loaded_champion.runtime.score(rows)
    stale = "replaced-" + os.urandom(4).hex()  # a version label no other test uses
    served = str(loaded_champion.source.version)
    before = client.get("/metrics").text
    score_copies(loaded_champion, [ShadowCopy(stale, loaded_champion, rows, answer)])
    after = client.get("/metrics").text
    assert sample(after, "shadow_requests_total", version=stale, outcome="skipped") == 1
    for outcome in ("scored", "failed"):
        assert counted(after, "shadow_requests_total", version=served, outcome=outcome) == counted(
            before, "shadow_requests_total", version=served, outcome=outcome
        )


def test_a_challenger_failing_at_scoring_time_leaves_every_answer_alone(
    tracking_server: TrackingServer, client_mlflow: MlflowClient, tmp_path: Path
) -> None:
    name = champion_model(client_mlflow, "variants-failing")
    code = tmp_path / "fails_on_real_rows.py"
    code.write_text(FAILS_ON_REAL_ROWS)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            signature=contract.signature(CLASS_NAMES),
            input_example=pd.DataFrame(
                np.zeros((1, contract.FEATURE_COUNT)), columns=list(contract.FEATURE_NAMES)
            ),
            registered_model_name=name,
        )
    assert str(info.registered_model_version) == "2"
    client_mlflow.set_registered_model_alias(name, "challenger", "2")
    rows = [record(FEATURES, i) for i in range(10)]
    with _challenger_app(tracking_server, name, challenger_mode="shadow") as client:
        _await_challenger(client, "2")  # it passed the gate: its input example is all zeros
        before = _shadow_requests(_variants(client))
        shadowed = [client.post("/predict", json=row) for row in rows]
        assert [r.status_code for r in shadowed] == [200] * len(rows)
        assert {r.headers["x-model-variant"] for r in shadowed} == {CHAMPION}
        wait_for(
            lambda: (
                _difference(_shadow_requests(_variants(client)), before)
                == {"scored": 0, "dropped": 0, "failed": len(rows), "skipped": 0}
            ),
            30,
            "every copy failed and counted",
        )
        _drain_shadow(client)
        assert _difference(_shadow_requests(_variants(client)), before) == {
            "scored": 0,
            "dropped": 0,
            "failed": len(rows),
            "skipped": 0,
        }
        # The same requests with the challenger out of the way (split, 0%): the same answers.
        assert client.put("/model/variants", json={"mode": "split", "percent": 0}).status_code == 200
        alone = [client.post("/predict", json=row) for row in rows]
    assert [r.json() for r in shadowed] == [r.json() for r in alone]


# --- 6. the policy file --------------------------------------------------------------------------


def test_a_policy_set_in_one_worker_is_picked_up_by_another(tmp_path: Path) -> None:
    path = tmp_path / "variant-policy.json"
    configured = SplitPolicy("split", 10)
    writer, reader = SplitPolicyHolder(configured, path), SplitPolicyHolder(configured, path)
    reader.refresh()
    assert reader.current == configured  # no file yet: the settings
    writer.set(SplitPolicy("shadow", 25.5))
    assert writer.current == SplitPolicy("shadow", 25.5)
    reader.refresh()
    assert reader.current == SplitPolicy("shadow", 25.5)
    assert reader.configured == configured  # what a restart goes back to
    # A worker started later reads the file at once.
    assert SplitPolicyHolder(configured, path).current == SplitPolicy("shadow", 25.5)


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"mode": "split"}',
        b'{"mode": "sideways", "percent": 5}',
        b'{"mode": "split", "percent": 500}',
    ],
    ids=["not json", "no percent", "unknown mode", "percent out of range"],
)
def test_an_unreadable_policy_file_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    path = tmp_path / "variant-policy.json"
    writer, reader = (
        SplitPolicyHolder(SplitPolicy("split", 10), path),
        SplitPolicyHolder(SplitPolicy("split", 10), path),
    )
    writer.set(SplitPolicy("split", 40))
    reader.refresh()
    assert reader.current == SplitPolicy("split", 40)
    seen = path.stat().st_mtime_ns
    path.write_bytes(content)
    os.utime(path, ns=(seen + 1_000_000, seen + 1_000_000))  # a change the reader must notice
    with caplog.at_level(logging.WARNING, logger="server.inference.split_policy"):
        reader.refresh()
    assert reader.current == SplitPolicy("split", 40)
    assert f"ignored an unreadable challenger policy in {path}" in caplog.text


# --- 7. settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model_uri", ["", "runs:/0123456789abcdef/model", "/models/local"])
def test_a_challenger_alias_without_a_registered_model_is_refused(model_uri: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ServerSettings(model_uri=model_uri, challenger_alias="challenger")
    assert describe_invalid_settings(refused.value) == CHALLENGER_SOURCE_MESSAGE


def test_a_challenger_uri_needs_no_registered_model() -> None:
    settings = ServerSettings(model_uri="", challenger_alias="challenger", challenger_uri="models:/other/7")
    assert settings.challenger_model_uri == "models:/other/7"


@pytest.mark.parametrize(
    ("model_uri", "expected"),
    [
        ("models:/fraud@champion", "models:/fraud@challenger"),
        ("models:/fraud/3", "models:/fraud@challenger"),
    ],
)
def test_the_challenger_uri_derives_from_the_model_uri(model_uri: str, expected: str) -> None:
    assert ServerSettings(model_uri=model_uri, challenger_alias="challenger").challenger_model_uri == expected


def test_no_challenger_alias_means_no_challenger() -> None:
    assert ServerSettings(model_uri="models:/fraud@champion").challenger_model_uri is None


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_blank_challenger_alias_switches_the_challenger_off(blank: str) -> None:
    """`CHALLENGER_ALIAS=` undoes a default set around the server, even without a registered model."""
    settings = ServerSettings(model_uri="", challenger_alias=blank, challenger_uri=blank)
    assert (settings.challenger_alias, settings.challenger_uri, settings.challenger_model_uri) == (
        None,
        None,
        None,
    )


def test_a_challenger_alias_with_other_characters_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        ServerSettings(model_uri="models:/fraud@champion", challenger_alias="chal lenger")
    assert describe_invalid_settings(refused.value).startswith("CHALLENGER_ALIAS: ")


@pytest.mark.parametrize(
    "options",
    [
        {"model_uri": "models:/fraud@champion", "challenger_alias": "champion"},
        {"model_uri": "models:/fraud@champion", "challenger_uri": "models:/fraud@champion"},
    ],
    ids=["the champion's alias", "the champion's URI"],
)
def test_a_challenger_that_is_the_champion_is_refused(options: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as refused:
        ServerSettings(**options)
    assert describe_invalid_settings(refused.value) == (
        "the challenger (models:/fraud@champion) is the champion's MODEL_URI itself"
    )


# --- 8. histogram_quantile -----------------------------------------------------------------------

INF = float("inf")


@pytest.mark.parametrize(
    ("quantile", "buckets", "expected"),
    [
        # 10 observations: 4 up to 0.1, 4 more up to 0.5, 2 up to 1.0.
        # p50: rank 5 lies in (0.1, 0.5], 1 of its 4: 0.1 + 0.4 * 1/4.
        (0.5, [(0.1, 4.0), (0.5, 8.0), (1.0, 10.0), (INF, 10.0)], 0.2),
        # p20: rank 2 in the first bucket, from 0: 0.1 * 2/4.
        (0.2, [(0.1, 4.0), (0.5, 8.0), (1.0, 10.0), (INF, 10.0)], 0.05),
        # p90: rank 9 in (0.5, 1.0], 1 of its 2: 0.5 + 0.5 * 1/2.
        (0.9, [(0.1, 4.0), (0.5, 8.0), (1.0, 10.0), (INF, 10.0)], 0.75),
        # p100: rank 10 at the top of (0.5, 1.0].
        (1.0, [(0.1, 4.0), (0.5, 8.0), (1.0, 10.0), (INF, 10.0)], 1.0),
        # A rank exactly at a bucket's top: that bucket's bound.
        (0.4, [(0.1, 4.0), (0.5, 8.0), (1.0, 10.0), (INF, 10.0)], 0.1),
        # An empty bucket is skipped: rank 6 lies in (0.2, 0.4], 1 of its 5: 0.2 + 0.2 * 1/5.
        (0.6, [(0.1, 5.0), (0.2, 5.0), (0.4, 10.0), (INF, 10.0)], 0.24),
        # p99 of 10 with 6 above the highest finite bound: rank 9.9 lies in +Inf, which says 0.2.
        (0.99, [(0.1, 2.0), (0.2, 4.0), (INF, 10.0)], 0.2),
        (0.5, [(0.1, 2.0), (0.2, 4.0), (INF, 10.0)], 0.2),
    ],
)
def test_histogram_quantile_matches_hand_computed_values(
    quantile: float, buckets: Buckets, expected: float
) -> None:
    assert histogram_quantile(quantile, buckets) == pytest.approx(expected)


@pytest.mark.parametrize(
    "buckets", [[], [(0.1, 0.0), (1.0, 0.0), (INF, 0.0)]], ids=["no buckets", "no observations"]
)
def test_histogram_quantile_without_observations_is_none(buckets: Buckets) -> None:
    assert histogram_quantile(0.5, buckets) is None
