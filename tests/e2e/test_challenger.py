"""Champion and challenger end to end: real server processes, a real registry, real requests.

Split mode's share and stickiness (across workers and a restart), shadow mode's answers and
agreement (recounted from the two versions loaded here), a challenger refused by the gate, and
the promotion of the challenger under load.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from registry_scripts.processes import api_process
from server.inference.variants import bucket_of
from tests.e2e.load import BackgroundLoad
from tests.helpers import run_ok, wait_for
from tests.registry import FEATURES, champion_model, register_29_features, register_broken, register_ours

ROW = {k: float(v) for k, v in FEATURES.iloc[0].items()}
ROWS = [{k: float(v) for k, v in row.items()} for _, row in FEATURES.iterrows()]


@pytest.fixture
def model_name(client_mlflow: MlflowClient) -> str:
    """v1 (logistic regression) on @champion, v2 (random forest) on @challenger."""
    name = champion_model(client_mlflow, "variants")
    assert register_ours(name, "random_forest") == "2"
    client_mlflow.set_registered_model_alias(name, "challenger", "2")
    return name


def _settings(name: str, **more: str) -> dict[str, str]:
    return {
        "MODEL_URI": f"models:/{name}@champion",
        "CHALLENGER_ALIAS": "challenger",
        "MODEL_POLL_SECONDS": "0.5",
        **more,
    }


def _variants(url: str) -> dict:
    response = httpx.get(f"{url}/model/variants", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _challenger(document: dict) -> dict:
    return next(v for v in document["variants"] if v["variant"] == "challenger")


def _challenger_serving(url: str, version: str = "2") -> bool:
    challenger = _challenger(_variants(url))
    return challenger["state"] == "serving" and challenger["version"] == version


async def _assign(
    url: str, keys: list[str], concurrency: int = 16, *, fresh_connections: bool = False
) -> dict[str, tuple[str, str]]:
    """Each key's (variant, version), one /predict per key, `concurrency` at a time; with
    `fresh_connections`, each on a connection of its own, so the kernel spreads them over the
    workers (SO_REUSEPORT hashes each new connection)."""
    headers = {"Connection": "close"} if fresh_connections else {}
    answers: dict[str, tuple[str, str]] = {}
    queue: asyncio.Queue[str] = asyncio.Queue()
    for key in keys:
        queue.put_nowait(key)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            while not queue.empty():
                key = queue.get_nowait()
                response = await http.post("/predict", json=ROW, headers={"X-Routing-Key": key, **headers})
                assert response.status_code == 200, response.text
                assert response.json()["model_version"] == response.headers["x-model-version"]
                answers[key] = (response.headers["x-model-variant"], response.headers["x-model-version"])

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return answers


def _serving_pids(url: str, variant: str) -> set[str]:
    """The workers whose `model_info` says they serve `variant`."""
    text = httpx.get(f"{url}/metrics").text
    return {
        sample.labels["pid"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "model_info" and sample.labels.get("variant") == variant and sample.value == 1
    }


def _expected(key: str, percent: float) -> str:
    return "challenger" if bucket_of(key) < round(percent * 100) else "champion"


def test_split_sends_its_share_to_the_challenger_and_each_key_sticks_across_workers_and_restarts(
    base_env: dict[str, str], model_name: str, tmp_path: Path
) -> None:
    keys = [f"customer-{i}" for i in range(10_000)]
    settings = _settings(model_name, CHALLENGER_PERCENT="20", WORKERS="2")
    with api_process(base_env, tmp_path / "api.log", **settings) as api:
        # Each worker loads the challenger on its own.
        wait_for(lambda: len(_serving_pids(api.url, "challenger")) == 2, 60, "the challenger in both workers")
        before = _challenger(_variants(api.url))["stats"]["requests"]
        answers = asyncio.run(_assign(api.url, keys))
        on_challenger = [k for k, (variant, _) in answers.items() if variant == "challenger"]
        assert 0.18 <= len(on_challenger) / len(keys) <= 0.22, len(on_challenger)
        assert {answers[k][1] for k in on_challenger} == {"2"}
        assert {v for k, (variant, v) in answers.items() if variant == "champion"} == {"1"}
        # Sticky: the hash of the key alone decides, so both workers agree with it.
        assert all(answers[k][0] == _expected(k, 20) for k in keys)
        # The comparison counts what both workers answered (each counts a request once it is answered).
        wait_for(
            lambda: _challenger(_variants(api.url))["stats"]["requests"] - before == len(on_challenger),
            10,
            "the challenger's answers counted",
        )
        # Each on a new connection: the same keys again, now spread over both workers anew.
        repeated = asyncio.run(_assign(api.url, keys[:500], fresh_connections=True))
        assert all(repeated[k] == answers[k] for k in keys[:500])
        # Raising the share at run time (every worker follows) moves only champion keys.
        put = httpx.put(f"{api.url}/model/variants", json={"percent": 30})
        assert put.status_code == 200, put.text
        assert put.json()["percent"] == 30
        wait_for(
            lambda: (
                asyncio.run(_assign(api.url, keys[:300]))
                == {
                    k: (_expected(k, 30), "2" if _expected(k, 30) == "challenger" else "1")
                    for k in keys[:300]
                }
            ),
            10,
            "both workers on 30%",
        )
        moved = asyncio.run(_assign(api.url, keys[:2000]))
        assert all(moved[k][0] == "challenger" for k in keys[:2000] if answers[k][0] == "challenger")
    with api_process(base_env, tmp_path / "api-restarted.log", **settings) as restarted:
        wait_for(lambda: len(_serving_pids(restarted.url, "challenger")) == 2, 60, "the challenger again")
        again = asyncio.run(_assign(restarted.url, keys[:1000], fresh_connections=True))
        assert all(again[k] == answers[k] for k in keys[:1000])  # back to the configured 20%


def test_shadow_answers_with_the_champion_and_its_agreement_matches_a_recount(
    base_env: dict[str, str], model_name: str, tmp_path: Path
) -> None:
    settings = _settings(model_name, CHALLENGER_MODE="shadow", CHALLENGER_PERCENT="100")
    champion = mlflow.pyfunc.load_model(f"models:/{model_name}/1").predict(FEATURES)
    challenger = mlflow.pyfunc.load_model(f"models:/{model_name}/2").predict(FEATURES)
    with (
        api_process(base_env, tmp_path / "api.log", **settings) as api,
        httpx.Client(base_url=api.url) as http,
    ):
        wait_for(lambda: _challenger_serving(api.url), 60, "the challenger loaded")
        for i, row in enumerate(ROWS):
            response = http.post("/predict", json=row, headers={"X-Routing-Key": f"k{i}"})
            assert response.status_code == 200
            assert response.headers["x-model-variant"] == "champion"
            assert response.json()["prediction"] == int(champion["prediction"].iloc[i])
            assert response.json()["probabilities"] == pytest.approx(
                {
                    "malignant": champion["probability_malignant"].iloc[i],
                    "benign": champion["probability_benign"].iloc[i],
                }
            )
        wait_for(
            lambda: _variants(api.url)["shadow"]["requests"]["scored"] == len(ROWS), 30, "the shadow done"
        )
        document = _variants(api.url)
        compared = json.loads(run_ok("registry_scripts.compare", api.url, "--json", env=base_env))
    shadow = document["shadow"]
    recount = int((champion["prediction"].to_numpy() == challenger["prediction"].to_numpy()).sum())
    assert shadow["version"] == "2"
    assert shadow["requests"] == {"scored": len(ROWS), "dropped": 0, "failed": 0, "skipped": 0}
    assert shadow["rows_compared"] == len(ROWS)
    assert shadow["same_class"] == recount
    assert 0 < recount < len(ROWS)  # the two versions do disagree somewhere: the count means something
    # Each row's probability difference, recounted into the same buckets.
    differences = np.abs(champion["probability_benign"] - challenger["probability_benign"]).to_numpy()
    for bucket in shadow["probability_difference_buckets"]:
        bound = np.inf if bucket["le"] == "+Inf" else bucket["le"]
        assert bucket["count"] == int((differences <= bound).sum()), bucket
    # The challenger's class mix is what version 2 predicts.
    labels = np.where(challenger["prediction"].to_numpy() == 1, "benign", "malignant")
    assert _challenger(document)["stats"]["classes"] == {
        name: int((labels == name).sum()) for name in sorted(set(labels.tolist()))
    }
    assert _challenger(document)["stats"]["requests"] == 0  # it answered none
    (merged,) = compared["shadow"]
    assert (merged["rows_compared"], merged["same_class"]) == (len(ROWS), recount)


def test_a_challenger_that_fails_the_gate_is_refused_and_the_champion_answers_everything(
    base_env: dict[str, str], model_name: str, client_mlflow: MlflowClient, tmp_path: Path
) -> None:
    broken = register_broken(model_name)
    client_mlflow.set_registered_model_alias(model_name, "challenger", broken)
    log = tmp_path / "api.log"
    with api_process(base_env, log, **_settings(model_name, CHALLENGER_PERCENT="50")) as api:
        wait_for(lambda: _challenger(_variants(api.url))["state"] == "refused", 60, "the challenger refused")
        challenger = _challenger(_variants(api.url))
        assert challenger["last_reload_error"]["version"] == broken
        assert "fails on its own input example" in challenger["last_reload_error"]["reason"]
        answers = asyncio.run(_assign(api.url, [f"user-{i}" for i in range(400)]))
        assert {variant for variant, _ in answers.values()} == {"champion"}
        metrics = httpx.get(f"{api.url}/metrics").text
        assert 'model_reloads_total{outcome="refused",variant="challenger"} 1.0' in metrics
        # Published by a task every half second: the refusal's 0 shows within one.
        wait_for(
            lambda: "challenger_traffic_percent 0.0" in httpx.get(f"{api.url}/metrics").text, 10, "share 0"
        )
        # A good version on the alias brings the challenger back.
        client_mlflow.set_registered_model_alias(model_name, "challenger", "2")
        wait_for(lambda: _challenger_serving(api.url), 60, "version 2 as challenger")
    assert f"refused {model_name} version {broken} as challenger: " in log.read_text()


def test_the_challenger_keeps_the_champions_signature_whatever_allow_signature_change_says(
    base_env: dict[str, str], model_name: str, client_mlflow: MlflowClient, tmp_path: Path
) -> None:
    """README: the challenger's signature must match the champion's, whatever ALLOW_SIGNATURE_CHANGE
    says; should the champion change its signature, the challenger answers nothing."""
    narrow = register_29_features(model_name)  # version 3: no feature_30
    settings = _settings(model_name, CHALLENGER_PERCENT="50", ALLOW_SIGNATURE_CHANGE="true")
    keys = [f"user-{i}" for i in range(200)]
    with api_process(base_env, tmp_path / "api.log", **settings) as api:
        wait_for(lambda: _challenger_serving(api.url), 60, "the challenger loaded")
        client_mlflow.set_registered_model_alias(model_name, "challenger", narrow)
        wait_for(lambda: _challenger(_variants(api.url))["state"] == "refused", 60, "the narrow one refused")
        assert "signature" in _challenger(_variants(api.url))["last_reload_error"]["reason"]
        client_mlflow.set_registered_model_alias(model_name, "challenger", "2")
        wait_for(lambda: _challenger_serving(api.url), 60, "version 2 as challenger again")
        # The champion may change its signature (ALLOW_SIGNATURE_CHANGE); the challenger then no
        # longer reads the champion's features, and answers none.
        client_mlflow.set_registered_model_alias(model_name, "champion", narrow)
        wait_for(lambda: _variants(api.url)["variants"][0]["version"] == narrow, 60, "the narrow champion")
        assert _challenger_serving(api.url)
        narrow_row = {k: v for k, v in ROW.items() if k != "feature_30"}
        with httpx.Client(base_url=api.url, timeout=30) as http:
            for key in keys:
                response = http.post("/predict", json=narrow_row, headers={"X-Routing-Key": key})
                assert response.status_code == 200, response.text
                assert (response.headers["x-model-variant"], response.headers["x-model-version"]) == (
                    "champion",
                    narrow,
                )
    assert any(_expected(key, 50) == "challenger" for key in keys)  # keys the challenger would have had


def test_promoting_the_challenger_under_load_fails_no_request_and_leaves_one_variant(
    base_env: dict[str, str], model_name: str, client_mlflow: MlflowClient, tmp_path: Path
) -> None:
    env = {**base_env, "MODEL_NAME": model_name}
    settings = _settings(model_name, CHALLENGER_PERCENT="50")
    with api_process(env, tmp_path / "api.log", **settings) as api, BackgroundLoad(api.url, ROW) as load:
        wait_for(lambda: _challenger_serving(api.url), 60, "the challenger loaded")
        wait_for(lambda: load.variants["challenger"] >= 20, 60, "load on both variants")
        # The MLflow UI shows where each version is live (tagged in the background).
        wait_for(
            lambda: (
                "serving.default.challenger" in client_mlflow.get_model_version(model_name, "2").tags
                and "serving.default" in client_mlflow.get_model_version(model_name, "1").tags
            ),
            10,
            "both versions tagged",
        )
        run_ok("registry_scripts.compare", api.url, "--promote", "--yes", env=env)
        wait_for(
            lambda: (
                [(v["variant"], v["state"], v["version"]) for v in _variants(api.url)["variants"]]
                == [("champion", "serving", "2"), ("challenger", "absent", None)]
            ),
            30,
            "one variant left",
        )
        promoted = load.total
        wait_for(lambda: load.answered_after(promoted) >= 50, 60, "load after the promotion")
        tail = load.versions[-40:]
    assert load.errors == []
    assert set(load.statuses) == {200}, load.statuses
    assert {version for _, version in tail} == {"2"}
    registered = client_mlflow.get_registered_model(model_name)
    assert registered.aliases == {"champion": "2"}
    wait_for(
        lambda: "serving.default.challenger" not in client_mlflow.get_model_version(model_name, "2").tags,
        10,
        "the challenger tag removed",
    )
    assert "serving.default" in client_mlflow.get_model_version(model_name, "2").tags
