"""Settings of the registry side (scripts and the embedded tracking server), read from the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL_NAME = "breast-cancer-classifier"
DEFAULT_ALIAS = "champion"


class RegistrySettings(BaseSettings):
    """Where the registry is and which registered model the scripts work on."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", protected_namespaces=())

    mlflow_tracking_uri: str | None = Field(
        default=None, description="Tracking server URI; MLflow's own default store when unset."
    )
    model_name: str = Field(default=DEFAULT_MODEL_NAME, description="Registered model name.")
    experiment_name: str = Field(
        default=DEFAULT_MODEL_NAME, description="MLflow experiment that training runs are logged to."
    )
    local_mlflow_port: int = Field(
        default=5000, description="Port of the tracking server that `make run` embeds."
    )
    local_data_dir: Path = Field(
        default=Path(".data/mlflow"), description="SQLite store and artifacts of the embedded server."
    )
