"""The route policy table: every route the app serves has the policy it should, and the fast lane
serves exactly the paths the table sends down it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from server.edge.fast_lane import ServingApp
from server.edge.route_policy import (
    FAST_LANE_PATHS,
    HTTP_PATHS,
    ROUTES,
    TRAFFIC_PATHS,
    policy_for,
    required_scope,
    route_template,
)
from server.live.loaded_model import LoadedModel


def test_the_prediction_routes_are_traffic_and_take_the_fast_lane() -> None:
    assert set(TRAFFIC_PATHS) == {
        "/predict",
        "/batch-predict",
        "/invocations",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
        "/v1/models/{name}:predict",
        "/inference.GRPCInferenceService/ModelInfer",
    }
    assert {path for path in TRAFFIC_PATHS if not ROUTES[path].grpc} == FAST_LANE_PATHS


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/predict", "/predict"),
        ("/v2/models/m/infer", "/v2/models/{name}/infer"),
        ("/v2/models/m/versions/3/infer", "/v2/models/{name}/versions/{version}/infer"),
        ("/v2/models/m/versions/3/ready", "/v2/models/{name}/versions/{version}/ready"),
        ("/v2/models/m/versions/3", "/v2/models/{name}/versions/{version}"),
        ("/v2/models/m/ready", "/v2/models/{name}/ready"),
        ("/v2/models/m", "/v2/models/{name}"),
        ("/v2/models/versions", "/v2/models/{name}"),
        ("/v2/models/m/versions", "/v2/models/m/versions"),
        ("/v2/models/m/infer/x", "/v2/models/m/infer/x"),
        ("/v2/models/", "/v2/models/"),
        ("/v2/models//infer", "/v2/models//infer"),
        ("/v1/models/m:predict", "/v1/models/{name}:predict"),
        ("/v1/models/m", "/v1/models/{name}"),
        ("/v1/models/:predict", "/v1/models/{name}"),
        ("/v1/models/m/x", "/v1/models/m/x"),
    ],
)
def test_paths_naming_a_model_are_looked_up_by_their_template(path: str, template: str) -> None:
    assert route_template(path) == template


def test_open_inference_paths_answer_in_their_protocol_shape() -> None:
    assert policy_for("/v2/models/m/infer").open_inference
    assert policy_for("/v2/anything").open_inference
    assert policy_for("/v1/models/m/x").open_inference
    assert not policy_for("/predict").open_inference
    assert not policy_for("/v20").open_inference


def test_the_app_sends_exactly_the_tables_paths_down_the_fast_lane(app: ServingApp) -> None:
    assert app.fast_paths == FAST_LANE_PATHS


def test_every_path_the_table_names_is_served(client: TestClient, loaded_champion: LoadedModel) -> None:
    """A GET finds each HTTP path (405 for the POST-only ones): no entry names a path that does not
    exist. Templates are asked with the served model's name and version; gRPC methods are
    `tests/e2e/test_open_inference_clients.py`'s."""
    source = loaded_champion.source
    paths = [
        path.replace("{name}", source.name or "").replace("{version}", source.version or "")
        for path in HTTP_PATHS
    ]
    unserved = [path for path in paths if client.get(path).status_code == 404]
    assert unserved == []


@pytest.mark.parametrize(
    ("path", "metrics_auth", "scope"),
    [
        ("/predict", False, "predict"),
        ("/model/metadata", False, "predict"),  # not in the table: the default
        ("/model/versions", False, "predict"),
        ("/model/reload", False, "admin"),
        ("/metrics", False, None),
        ("/metrics", True, "metrics"),
        ("/health", True, None),
        ("/webhooks/mlflow", False, None),
        ("/v2/health/ready", False, None),
        ("/v2/health/live", False, None),
        ("/v2", False, "predict"),
        ("/v2/models/m/infer", False, "predict"),
        ("/v1/models/m:predict", False, "predict"),
    ],
)
def test_scopes(path: str, metrics_auth: bool, scope: str | None) -> None:
    assert required_scope(path, metrics_auth) == scope


def test_a_path_not_in_the_table_needs_predict_and_is_not_traffic() -> None:
    policy = policy_for("/model/features")
    assert (policy.scope, policy.traffic, policy.fast_lane) == ("predict", False, False)
