"""The route policy table: every route the app serves has the policy it should, and the fast lane
serves exactly the paths the table sends down it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from server.edge.fast_lane import ServingApp
from server.edge.route_policy import FAST_LANE_PATHS, ROUTES, TRAFFIC_PATHS, policy_for, required_scope


def test_the_prediction_routes_are_traffic_and_take_the_fast_lane() -> None:
    assert set(TRAFFIC_PATHS) == {"/predict", "/batch-predict", "/invocations"}
    assert set(TRAFFIC_PATHS) == FAST_LANE_PATHS


def test_the_app_sends_exactly_the_tables_paths_down_the_fast_lane(app: ServingApp) -> None:
    assert app.fast_paths == FAST_LANE_PATHS


def test_every_path_the_table_names_is_served(client: TestClient) -> None:
    """A GET finds each (405 for the POST-only ones): no entry names a path that does not exist."""
    unserved = [path for path in ROUTES if client.get(path).status_code == 404]
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
    ],
)
def test_scopes(path: str, metrics_auth: bool, scope: str | None) -> None:
    assert required_scope(path, metrics_auth) == scope


def test_a_path_not_in_the_table_needs_predict_and_is_not_traffic() -> None:
    policy = policy_for("/model/features")
    assert (policy.scope, policy.traffic, policy.fast_lane) == ("predict", False, False)
