"""Live promotion end to end: real uvicorn processes following a real registry under load."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from registry_scripts.processes import api_process
from registry_scripts.tracking_server import TrackingServer
from tests.e2e.load import BackgroundLoad
from tests.helpers import run_ok, wait_for
from tests.registry import (
    FEATURES,
    champion_model,
    register_29_features,
    register_flavor,
    register_mismatched,
    register_ours,
)
from tests.server.metrics_text import sample, served_versions

ROW = {k: float(v) for k, v in FEATURES.iloc[0].items()}
SECRET = "e2e-webhook-secret"


def _served(url: str) -> str | None:
    return httpx.get(f"{url}/health").json()["model_version"]


@pytest.fixture
def model_name(client_mlflow: MlflowClient) -> str:
    return champion_model(client_mlflow, "live")


def test_promotions_under_load_lose_no_request(
    base_env: dict[str, str], model_name: str, client_mlflow: MlflowClient, tmp_path: Path
) -> None:
    env = {**base_env, "MODEL_NAME": model_name}
    settings = {"MODEL_URI": f"models:/{model_name}@champion", "MODEL_POLL_SECONDS": "0.5"}
    register_ours(model_name, "random_forest")
    register_ours(model_name, "gradient_boosting")
    with api_process(env, tmp_path / "api.log", **settings) as api, BackgroundLoad(api.url, ROW) as load:
        wait_for(lambda: load.total >= 20, 60, "load on version 1")
        run_ok("registry_scripts.promote", "2", env=env)  # the data scientist's script
        # How soon is `make bench-swap`'s to measure; here only that it happens, while serving goes on.
        wait_for(lambda: load.first_seen("2") is not None, 30, "version 2 answering")
        client_mlflow.set_registered_model_alias(model_name, "champion", "3")  # the MLflow UI
        wait_for(lambda: load.first_seen("3") is not None, 30, "version 3 answering")
        run_ok("registry_scripts.promote", "--rollback", env=env)
        wait_for(lambda: _served(api.url) == "2", 30, "rolled back to version 2")
        rolled_back = load.total
        wait_for(lambda: load.answered_after(rolled_back) >= 20, 60, "load after the rollback")
    assert load.errors == []
    assert set(load.statuses) == {200}, load.statuses
    versions_seen = [v for _, v in load.versions]
    assert {"1", "2", "3"} <= set(versions_seen)


def test_promotions_between_flavours_under_load_lose_no_request(
    base_env: dict[str, str], model_name: str, client_mlflow: MlflowClient, tmp_path: Path
) -> None:
    """wrapper -> xgboost -> scikit-learn (skops, loaded with unpickling off) -> lightgbm booster."""
    settings = {"MODEL_URI": f"models:/{model_name}@champion", "MODEL_POLL_SECONDS": "0.5"}
    flavours = {"2": "xgboost", "3": "sklearn", "4": "lightgbm"}
    assert register_flavor(model_name, "xgboost", "classifier") == "2"
    assert register_flavor(model_name, "sklearn", "random_forest") == "3"
    assert register_flavor(model_name, "lightgbm", "booster") == "4"
    with api_process(base_env, tmp_path / "api.log", **settings) as api, BackgroundLoad(api.url, ROW) as load:
        wait_for(lambda: load.total >= 20, 60, "load on version 1")
        for version, runtime in flavours.items():
            client_mlflow.set_registered_model_alias(model_name, "champion", version)
            wait_for(lambda v=version: load.first_seen(v) is not None, 60, f"version {version} answering")
            assert httpx.get(f"{api.url}/model/metadata").json()["runtime"] == runtime
        promoted = load.total
        wait_for(lambda: load.answered_after(promoted) >= 20, 60, "load after the last promotion")
    assert load.errors == []
    assert set(load.statuses) == {200}, load.statuses
    assert {v for _, v in load.versions} == {"1", "2", "3", "4"}


def test_broken_versions_of_every_flavour_are_refused_while_serving_goes_on(
    base_env: dict[str, str], model_name: str, client_mlflow: MlflowClient, tmp_path: Path
) -> None:
    settings = {"MODEL_URI": f"models:/{model_name}@champion", "MODEL_POLL_SECONDS": "0.5"}
    broken = {
        register_mismatched(model_name, flavor): flavor for flavor in ("xgboost", "lightgbm", "sklearn")
    }
    with api_process(base_env, tmp_path / "api.log", **settings) as api, BackgroundLoad(api.url, ROW) as load:
        for version in broken:
            client_mlflow.set_registered_model_alias(model_name, "champion", version)
            wait_for(
                lambda v=version: (
                    (httpx.get(f"{api.url}/model/metadata").json()["last_reload_error"] or {}).get("version")
                    == v
                ),
                60,
                f"refusal of version {version} ({broken[version]})",
            )
            error = httpx.get(f"{api.url}/model/metadata").json()["last_reload_error"]
            assert error["reason"].startswith("it fails on its own input example"), error
        refused = load.total
        wait_for(lambda: load.answered_after(refused) >= 20, 60, "load after the refusals")
    assert load.errors == []
    assert set(load.statuses) == {200}
    assert {v for _, v in load.versions} == {"1"}


def test_a_29_feature_promotion_is_refused_while_serving_goes_on(
    base_env: dict[str, str], model_name: str, client_mlflow: MlflowClient, tmp_path: Path
) -> None:
    settings = {"MODEL_URI": f"models:/{model_name}@champion", "MODEL_POLL_SECONDS": "0.5"}
    register_29_features(model_name)
    with api_process(base_env, tmp_path / "api.log", **settings) as api, BackgroundLoad(api.url, ROW) as load:
        client_mlflow.set_registered_model_alias(model_name, "champion", "2")
        wait_for(
            lambda: httpx.get(f"{api.url}/model/metadata").json()["last_reload_error"] is not None,
            30,
            "refusal",
        )
        refused = load.total
        wait_for(lambda: load.answered_after(refused) >= 20, 60, "load after the refusal")
    assert load.errors == []
    assert set(load.statuses) == {200}
    assert {v for _, v in load.versions} == {"1"}


def test_mlflow_delivers_a_webhook_and_the_swap_is_immediate(
    base_env: dict[str, str], model_name: str, client_mlflow: MlflowClient, tmp_path: Path
) -> None:
    settings = {
        "MODEL_URI": f"models:/{model_name}@champion",
        "MODEL_POLL_SECONDS": "0",
        "MLFLOW_WEBHOOK_SECRET": SECRET,
    }
    register_ours(model_name)
    with api_process(base_env, tmp_path / "api.log", **settings) as api:
        hook_env = {**base_env, "MLFLOW_WEBHOOK_SECRET": SECRET}
        hook_name = f"hook-{model_name}"
        run_ok(
            "registry_scripts.webhook",
            "--url",
            f"{api.url}/webhooks/mlflow",
            "--name",
            hook_name,
            env=hook_env,
        )
        try:
            time.sleep(1.5)  # MLflow's webhook cache (MLFLOW_WEBHOOK_CACHE_TTL=1 in the test registry)
            client_mlflow.set_registered_model_alias(model_name, "champion", "2")
            # Polling is off (MODEL_POLL_SECONDS=0): only the delivery can make version 2 served.
            wait_for(lambda: _served(api.url) == "2", 15, "version 2 served")
            assert "delivery refused" not in api.log()
        finally:
            for hook in client_mlflow.list_webhooks():
                if hook.name == hook_name:
                    client_mlflow.delete_webhook(hook.webhook_id)


def _await_checks(url: str, checks: int) -> None:
    """Until the server has asked the registry `checks` more times (each stamps `last_check`)."""

    def last_check() -> str | None:
        return httpx.get(f"{url}/model/metadata").json()["registry"]["last_check"]

    seen = [last_check()]

    def another() -> bool:
        check = last_check()
        if check != seen[-1]:
            seen.append(check)
        return len(seen) > checks

    wait_for(another, 60, f"{checks} more registry checks")


def test_a_registry_that_goes_away_never_takes_the_model_down(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    registry = TrackingServer(tmp_path / "mlflow")
    registry.start()
    env = {**base_env, "MLFLOW_TRACKING_URI": registry.url}
    settings = {"MODEL_POLL_SECONDS": "0.3"}
    try:
        run_ok("registry_scripts.train", env=env)
        with (
            api_process(env, tmp_path / "api.log", **settings) as api,
            BackgroundLoad(api.url, ROW, threads=4) as load,
        ):
            registry.stop()
            wait_for(
                lambda: httpx.get(f"{api.url}/model/metadata").json()["registry"]["reachable"] is False,
                30,
                "unreachable",
            )
            assert httpx.get(f"{api.url}/health").json()["model_loaded"] is True
            assert httpx.get(f"{api.url}/model/metadata").json()["registry"]["last_error"]
            assert httpx.get(f"{api.url}/ping").status_code == 200
            assert sample(httpx.get(f"{api.url}/metrics").text, "registry_reachable") == 0
            _await_checks(api.url, 2)  # it keeps asking, and keeps serving, while the registry is down
            registry.start()
            wait_for(
                lambda: httpx.get(f"{api.url}/model/metadata").json()["registry"]["reachable"] is True,
                90,
                "reachable",
            )
        assert set(load.statuses) == {200}
        assert load.errors == []
    finally:
        registry.stop()


def test_two_workers_converge_on_the_promoted_version(
    base_env: dict[str, str], model_name: str, client_mlflow: MlflowClient, tmp_path: Path
) -> None:
    settings = {"MODEL_URI": f"models:/{model_name}@champion", "MODEL_POLL_SECONDS": "0.5", "WORKERS": "2"}
    register_ours(model_name)
    with api_process(base_env, tmp_path / "api.log", **settings) as api:
        client_mlflow.set_registered_model_alias(model_name, "champion", "2")

        def both_on_two() -> bool:
            return sorted(served_versions(httpx.get(f"{api.url}/metrics").text).values()) == ["2", "2"]

        wait_for(both_on_two, 30, "both workers on version 2")
