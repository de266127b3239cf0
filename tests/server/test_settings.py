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


def test_the_prediction_log_is_off_by_default_and_a_blank_url_turns_it_off() -> None:
    assert ServerSettings(_env_file=None).prediction_log_dsn() is None
    assert ServerSettings(prediction_log_url="  ").prediction_log_dsn() is None


@pytest.mark.parametrize(
    ("url", "dsn"),
    [
        ("postgresql://u:p@db:5432/log", "postgresql+psycopg://u:p@db:5432/log"),
        ("postgres://u@db/log", "postgresql+psycopg://u@db/log"),
        ("postgresql+psycopg://u@db/log", "postgresql+psycopg://u@db/log"),
        ("sqlite:///.data/predictions.db", "sqlite:///.data/predictions.db"),
    ],
)
def test_a_bare_postgresql_url_means_psycopg(url: str, dsn: str) -> None:
    assert ServerSettings(prediction_log_url=url).prediction_log_dsn() == dsn


def test_the_log_url_is_never_shown() -> None:
    settings = ServerSettings(prediction_log_url="postgresql://u:hunter2@db/log")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in settings.model_dump_json()


@pytest.mark.parametrize(
    ("window", "rows", "seconds"),
    [
        ("10000/1h", 10_000, 3600.0),
        (" 500 / 30m ", 500, 1800.0),
        ("50/1.5d", 50, 129_600.0),
        ("1/90s", 1, 90.0),
    ],
)
def test_the_drift_window_is_rows_and_a_duration(window: str, rows: int, seconds: float) -> None:
    settings = ServerSettings(drift_window=window)
    assert (settings.drift_window_rows, settings.drift_window_seconds) == (rows, seconds)


@pytest.mark.parametrize("window", ["0/1h", "100/0h", "100", "1h", "100/1y", "-5/1h", "100/1h/2"])
def test_a_drift_window_without_both_parts_above_zero_is_refused(window: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ServerSettings(drift_window=window)
    assert refused.value.errors()[0]["msg"] == (
        "Value error, expected ROWS/DURATION with both above zero, e.g. 10000/1h (durations in s, m, h or d)"
    )
