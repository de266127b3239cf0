"""Server fixtures: settings -> loaded model -> app -> in-process client.

The model is loaded once per session from the real tracking server; every test gets a fresh
app around it, so tests never share request state.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from registry_scripts.dataset import load_frame
from registry_scripts.tracking_server import TrackingServer
from server.app import create_app
from server.live.loaded_model import LoadedModel
from server.live.loading import ModelLoader
from server.live.model_store import ModelStore
from server.settings import ServerSettings


@pytest.fixture(scope="session")
def dataset() -> pd.DataFrame:
    return load_frame()[0]


@pytest.fixture(scope="session")
def loaded_champion(tracking_server: TrackingServer, champion_uri: str) -> Iterator[LoadedModel]:
    store = ModelStore(ModelLoader(tracking_server.url).load_uri(champion_uri))
    yield store.current
    store.close()


@pytest.fixture
def settings(tracking_server: TrackingServer, champion_uri: str) -> ServerSettings:
    return ServerSettings(model_uri=champion_uri, mlflow_tracking_uri=tracking_server.url, max_batch_size=50)


@pytest.fixture
def app(settings: ServerSettings, loaded_champion: LoadedModel) -> FastAPI:
    return create_app(settings, store=ModelStore(loaded_champion))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def record(dataset: pd.DataFrame, row: int = 0) -> dict[str, Any]:
    """One dataset row as a /predict body."""
    return {name: float(value) for name, value in dataset.iloc[row].items()}


def json_with_literal(body: dict[str, Any], field: str, literal: str) -> bytes:
    """`body` as JSON text with `field`'s value written as a raw literal (NaN, 1e400, …)."""
    placeholder = "__literal__"
    return json.dumps({**body, field: placeholder}).replace(f'"{placeholder}"', literal).encode()


JSON_HEADERS = {"content-type": "application/json"}
