"""`registry_scripts.train` against a real tracking server."""

from __future__ import annotations

from mlflow import MlflowClient

from tests.helpers import run_module, run_ok

METRICS = {"accuracy", "f1", "precision", "recall", "roc_auc"}


def test_train_registers_a_version_carrying_the_five_metrics(
    model_env: dict[str, str], client_mlflow: MlflowClient
) -> None:
    version = run_ok("registry_scripts.train", env=model_env)
    assert version == "1"
    registered = client_mlflow.get_model_version(model_env["MODEL_NAME"], version)
    metrics = client_mlflow.get_run(registered.run_id).data.metrics
    assert set(metrics) >= METRICS
    assert all(0.9 < metrics[name] <= 1.0 for name in METRICS)
    params = client_mlflow.get_run(registered.run_id).data.params
    assert params["model_type"] == "logistic_regression"
    assert params["seed"] == "42"


def test_first_version_takes_the_free_alias_and_later_ones_leave_it(
    model_env: dict[str, str], client_mlflow: MlflowClient
) -> None:
    name = model_env["MODEL_NAME"]
    assert run_ok("registry_scripts.train", env=model_env) == "1"
    assert client_mlflow.get_registered_model(name).aliases == {"champion": "1"}
    assert run_ok("registry_scripts.train", "--model-type", "random_forest", env=model_env) == "2"
    assert client_mlflow.get_registered_model(name).aliases == {"champion": "1"}


def test_promote_flag_moves_the_alias_to_the_new_version(
    model_env: dict[str, str], client_mlflow: MlflowClient
) -> None:
    run_ok("registry_scripts.train", env=model_env)
    version = run_ok(
        "registry_scripts.train", "--promote", "--model-type", "gradient_boosting", env=model_env
    )
    assert client_mlflow.get_registered_model(model_env["MODEL_NAME"]).aliases == {"champion": version}
    assert version == "2"


def test_if_no_champion_trains_nothing_when_the_alias_is_set(
    model_env: dict[str, str], client_mlflow: MlflowClient
) -> None:
    run_ok("registry_scripts.train", env=model_env)
    assert run_ok("registry_scripts.train", "--if-no-champion", env=model_env) == "1"
    assert len(client_mlflow.search_model_versions(f"name = '{model_env['MODEL_NAME']}'")) == 1


def test_seed_changes_the_split(model_env: dict[str, str], client_mlflow: MlflowClient) -> None:
    run_ok("registry_scripts.train", "--seed", "7", env=model_env)
    version = client_mlflow.get_model_version(model_env["MODEL_NAME"], "1")
    assert client_mlflow.get_run(version.run_id).data.params["seed"] == "7"


def test_unknown_model_type_is_a_usage_error(model_env: dict[str, str]) -> None:
    result = run_module("registry_scripts.train", "--model-type", "svm", env=model_env)
    assert result.returncode == 2
    assert "invalid choice: 'svm'" in result.stderr


def test_unreachable_tracking_server_fails_with_one_line(model_env: dict[str, str]) -> None:
    env = {**model_env, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    result = run_module("registry_scripts.train", env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "127.0.0.1:9" in errors[0]
