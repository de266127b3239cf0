"""`registry_scripts.promote`: moving the alias, refusing unknown versions, rolling back."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from tests.helpers import run_module, run_ok
from tests.registry import register_ours


@pytest.fixture
def three_versions(model_env: dict[str, str], client_mlflow: MlflowClient) -> dict[str, str]:
    """A model with versions 1, 2 and 3 and `@champion` on version 1 (registered in process:
    `train` itself is tested in test_train.py)."""
    for _ in range(3):
        register_ours(model_env["MODEL_NAME"])
    client_mlflow.set_registered_model_alias(model_env["MODEL_NAME"], "champion", "1")
    return model_env


def _champion(client_mlflow: MlflowClient, env: dict[str, str]) -> str | None:
    return client_mlflow.get_registered_model(env["MODEL_NAME"]).aliases.get("champion")


def test_promote_points_the_alias_at_the_version(
    three_versions: dict[str, str], client_mlflow: MlflowClient
) -> None:
    output = run_ok("registry_scripts.promote", "3", env=three_versions)
    assert output == f"{three_versions['MODEL_NAME']}@champion: 1 -> 3"
    assert _champion(client_mlflow, three_versions) == "3"


def test_promote_another_alias_leaves_champion(
    three_versions: dict[str, str], client_mlflow: MlflowClient
) -> None:
    run_ok("registry_scripts.promote", "2", "--alias", "challenger", env=three_versions)
    aliases = client_mlflow.get_registered_model(three_versions["MODEL_NAME"]).aliases
    assert aliases == {"champion": "1", "challenger": "2"}


def test_promote_refuses_an_unknown_version(
    three_versions: dict[str, str], client_mlflow: MlflowClient
) -> None:
    result = run_module("registry_scripts.promote", "9", env=three_versions)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: {three_versions['MODEL_NAME']} has no version 9"
    assert _champion(client_mlflow, three_versions) == "1"


def test_rollback_walks_back_through_the_history(
    three_versions: dict[str, str], client_mlflow: MlflowClient
) -> None:
    run_ok("registry_scripts.promote", "2", env=three_versions)
    run_ok("registry_scripts.promote", "3", env=three_versions)
    assert run_ok("registry_scripts.promote", "--rollback", env=three_versions).endswith("3 -> 2")
    assert _champion(client_mlflow, three_versions) == "2"
    assert run_ok("registry_scripts.promote", "--rollback", env=three_versions).endswith("2 -> 1")
    assert _champion(client_mlflow, three_versions) == "1"


def test_rollback_after_a_move_in_the_mlflow_ui_returns_to_the_version_before_it(
    three_versions: dict[str, str], client_mlflow: MlflowClient
) -> None:
    run_ok("registry_scripts.promote", "2", env=three_versions)
    client_mlflow.set_registered_model_alias(three_versions["MODEL_NAME"], "champion", "3")  # the UI
    assert run_ok("registry_scripts.promote", "--rollback", env=three_versions).endswith("3 -> 2")
    assert run_ok("registry_scripts.promote", "--rollback", env=three_versions).endswith("2 -> 1")
    assert _champion(client_mlflow, three_versions) == "1"


def test_rollback_without_history_fails_and_keeps_the_alias(
    three_versions: dict[str, str], client_mlflow: MlflowClient
) -> None:
    result = run_module("registry_scripts.promote", "--rollback", env=three_versions)
    assert result.returncode == 1
    assert "no earlier version" in result.stderr
    assert _champion(client_mlflow, three_versions) == "1"


def test_train_promote_is_recorded_for_rollback(
    model_env: dict[str, str], client_mlflow: MlflowClient
) -> None:
    run_ok("registry_scripts.train", env=model_env)
    run_ok("registry_scripts.train", "--promote", env=model_env)
    run_ok("registry_scripts.promote", "--rollback", env=model_env)
    assert _champion(client_mlflow, model_env) == "1"


def test_version_and_rollback_together_is_a_usage_error(model_env: dict[str, str]) -> None:
    result = run_module("registry_scripts.promote", "2", "--rollback", env=model_env)
    assert result.returncode == 2
    assert "give either a VERSION or --rollback" in result.stderr
