"""ServerSettings: defaults from the issue, values from the environment, validation once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from server.settings import ServerSettings


def test_defaults() -> None:
    settings = ServerSettings(_env_file=None)
    assert settings.model_uri == "models:/breast-cancer-classifier@champion"
    assert (settings.api_host, settings.api_port, settings.workers) == ("127.0.0.1", 8000, 1)
    assert (settings.log_level, settings.max_batch_size, settings.max_body_bytes) == (
        "INFO",
        1000,
        10 * 1024 * 1024,
    )
    assert str(settings.model_path) == "artifacts/model/model.skops"
    assert settings.allow_pickled_models is False
    assert (settings.auth_failures_per_minute, settings.forwarded_allow_ips) == (30, "127.0.0.1,::1")


def test_values_come_from_the_environment() -> None:
    env = {
        "PATH": os.environ["PATH"],
        "API_PORT": "9001",
        "workers": "3",
        "LOG_LEVEL": "debug",
        "MAX_BATCH_SIZE": "10",
    }
    code = "from server.settings import ServerSettings; print(ServerSettings().model_dump_json())"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    settings = json.loads(result.stdout)
    assert (settings["api_port"], settings["workers"], settings["log_level"]) == (9001, 3, "DEBUG")
    assert settings["max_batch_size"] == 10


@pytest.mark.parametrize(
    ("field", "value"),
    [("api_port", 0), ("workers", 0), ("max_batch_size", 0), ("log_level", "LOUD"), ("log_format", "xml")],
)
def test_invalid_values_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        ServerSettings(**{field: value})


def test_every_field_is_documented() -> None:
    assert all(info.description for info in ServerSettings.model_fields.values())


def test_placeholder_secrets_are_refused_outside_local_use() -> None:
    with pytest.raises(ValidationError, match="MLFLOW_WEBHOOK_SECRET still holds its placeholder"):
        ServerSettings(environment="production", mlflow_webhook_secret="change-me-webhook-secret")
    assert ServerSettings(environment="local", mlflow_webhook_secret="change-me").mlflow_webhook_secret
    assert ServerSettings(
        environment="production", mlflow_webhook_secret="a-real-secret"
    ).mlflow_webhook_secret
