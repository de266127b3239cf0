"""MLflow's client reads its HTTP behaviour from environment variables only; set them from ours."""

from __future__ import annotations

import os

from server.settings import ServerSettings


def apply_mlflow_client_settings(settings: ServerSettings) -> None:
    """Bound MLflow's own retries so the server's load timeout and backoff are what apply."""
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.mlflow_http_request_max_retries)
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(settings.mlflow_http_request_timeout))
