"""The compose topology, run natively: PostgreSQL, `docker-entrypoint.sh mlflow` on it,
`docker-entrypoint.sh train`, the API through the entry point, and Debian's Prometheus scraping
the API with the project's own prometheus.yml (targets rewritten to loopback) and alert rules."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml

from registry_scripts.processes import VENV_BIN, ServerProcess, free_port
from tests.helpers import wait_for
from tests.ops.tools import ROOT, tool
from tests.registry import FEATURES

ENTRYPOINT = ["sh", str(ROOT / "docker-entrypoint.sh")]
ROW = {k: float(v) for k, v in FEATURES.iloc[0].items()}


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh PostgreSQL database on 127.0.0.1:5432, dropped afterwards."""
    name = f"registry_serve_{uuid.uuid4().hex[:12]}"
    admin = psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", autocommit=True)
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def _env(**values: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MODEL_", "API_"))}
    return {
        **base,
        "PATH": f"{VENV_BIN}:{base.get('PATH', os.defpath)}",
        "PYTHONWARNINGS": "ignore",
        **values,
    }


def _prometheus_config(api_port: int, folder: Path) -> Path:
    config = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(ROOT / "monitoring" / name) for name in config["rule_files"]]
    for job in config["scrape_configs"]:
        for group in job["static_configs"]:
            group["targets"] = [f"127.0.0.1:{api_port}" for _ in group["targets"]]
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _query(prometheus: str, expression: str) -> list[dict]:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=10).json()
    assert body["status"] == "success", (expression, body)
    return body["data"]["result"]


def test_the_compose_topology_runs_end_to_end(database: str, tmp_path: Path) -> None:
    mlflow_port, api_port, prometheus_port = free_port(), free_port(), free_port()
    tracking = f"http://127.0.0.1:{mlflow_port}"
    mlflow_env = _env(
        MLFLOW_BACKEND_STORE_URI=database,
        MLFLOW_ARTIFACTS_DESTINATION=str(tmp_path / "artifacts"),
        MLFLOW_HOST="127.0.0.1",
        MLFLOW_PORT=str(mlflow_port),
        MLFLOW_WORKERS="1",
    )
    with ServerProcess([*ENTRYPOINT, "mlflow"], mlflow_env, mlflow_port, "/health", tmp_path / "mlflow.log"):
        train = subprocess.run([*ENTRYPOINT, "train"], env=_env(MLFLOW_TRACKING_URI=tracking),
                               capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        assert train.returncode == 0, train.stderr[-3000:]
        assert train.stdout.strip() == "1"
        again = subprocess.run([*ENTRYPOINT, "train"], env=_env(MLFLOW_TRACKING_URI=tracking),
                               capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        assert (again.returncode, again.stdout.strip()) == (0, "1")  # idempotent: nothing trained

        with psycopg.connect(database) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT name FROM registered_models")
            assert cursor.fetchall() == [("breast-cancer-classifier",)]

        api_env = _env(
            SERVE_API="true", MLFLOW_TRACKING_URI=tracking, API_HOST="127.0.0.1", API_PORT=str(api_port)
        )
        with ServerProcess(ENTRYPOINT, api_env, api_port, "/ping", tmp_path / "api.log") as api:
            config = _prometheus_config(api_port, tmp_path)
            command = [
                tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
            ]  # fmt: skip
            with ServerProcess(
                command, _env(), prometheus_port, "/-/ready", tmp_path / "prometheus.log"
            ) as prom:
                for _ in range(20):
                    assert httpx.post(f"{api.url}/predict", json=ROW).status_code == 200
                up = 'up{job="registry-serve-api"}'
                wait_for(lambda: [r["value"][1] for r in _query(prom.url, up)] == ["1"], 60, "up == 1")
                wait_for(
                    lambda: bool(_query(prom.url, "sum(prediction_requests_total) > 0")),
                    60,
                    "requests counted",
                )
                rules = httpx.get(f"{prom.url}/api/v1/rules").json()["data"]["groups"][0]["rules"]
                assert {r["name"] for r in rules} >= {
                    "ApiDown",
                    "HighErrorRatio",
                    "HighLatencyP95",
                    "ModelNotLoaded",
                    "ModelReloadFailures",
                }
                assert {r["health"] for r in rules} == {"ok"}
                dashboard = json.loads((ROOT / "monitoring/grafana/dashboards/model-server.json").read_text())
                for panel in dashboard["panels"]:
                    for target in panel["targets"]:
                        _query(prom.url, target["expr"])  # every dashboard query evaluates
                assert _query(prom.url, 'model_info{name="breast-cancer-classifier", version="1"}')
