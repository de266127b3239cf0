"""The fast lane answers exactly what the FastAPI routes answer, only sooner."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.edge.fast_lane import ServingApp
from server.live.loaded_model import LoadedModel
from server.live.model_store import ModelStore
from server.settings import ServerSettings
from tests.server.conftest import JSON_HEADERS, record


@pytest.fixture
def laneless(settings: ServerSettings, loaded_champion: LoadedModel) -> Iterator[TestClient]:
    app = create_app(settings, store=ModelStore(loaded_champion))
    assert isinstance(app, ServingApp)
    app.fast_lane = None
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _requests(dataset: pd.DataFrame) -> list[tuple[str, bytes | None, dict[str, str]]]:
    one = record(dataset)
    split = {"dataframe_split": {"columns": list(one), "data": [list(one.values())]}}
    return [
        ("/predict", pd.Series(one).to_json().encode(), JSON_HEADERS),
        ("/predict", b'{"feature_1": "x"}', JSON_HEADERS),
        ("/predict", b"{", JSON_HEADERS),
        ("/predict", b"{}", {"content-type": "text/plain"}),
        ("/batch-predict", b'{"records": []}', JSON_HEADERS),
        ("/batch-predict", pd.Series({"records": [one, one]}).to_json().encode(), JSON_HEADERS),
        ("/invocations", pd.Series(split).to_json().encode(), JSON_HEADERS),
        ("/invocations", b'{"dataframe_split": {"columns": ["feature_1"], "data": [[1]]}}', JSON_HEADERS),
        ("/invocations", b"a,b\n1,2\n", {"content-type": "text/csv"}),
        ("/invocations", b"{}", {}),
    ]


def test_lane_and_routes_give_the_same_answers(
    client: TestClient, laneless: TestClient, dataset: pd.DataFrame
) -> None:
    for path, body, headers in _requests(dataset):
        fast = client.post(path, content=body, headers=headers)
        slow = laneless.post(path, content=body, headers=headers)
        assert (path, fast.status_code) == (path, slow.status_code)
        fast_body, slow_body = fast.json(), slow.json()
        fast_body.pop("request_id", None)
        slow_body.pop("request_id", None)
        assert fast_body == slow_body
        assert fast.headers.get("x-model-version") == slow.headers.get("x-model-version")
        assert fast.headers["content-type"] == slow.headers["content-type"]
        assert "x-request-id" in fast.headers


def test_other_methods_on_lane_paths_still_reach_fastapi(client: TestClient) -> None:
    response = client.put("/predict", json={})
    assert response.status_code == 405
    assert response.json()["error_code"] == "METHOD_NOT_ALLOWED"


async def _fastapi_stack_is_gone(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 599, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize("root_path", ["", "/api"])
def test_prediction_posts_bypass_the_fastapi_stack(
    settings: ServerSettings, loaded_champion: LoadedModel, dataset: pd.DataFrame, root_path: str
) -> None:
    app = create_app(settings, store=ModelStore(loaded_champion))
    with TestClient(app, root_path=root_path) as client:
        app.middleware_stack = _fastapi_stack_is_gone  # built at start-up; now replaced
        assert client.post(f"{root_path}/predict", json=record(dataset)).status_code == 200
        assert client.post(f"{root_path}/batch-predict", json={"records": []}).status_code == 422
        assert client.get(f"{root_path}/health").status_code == 599
