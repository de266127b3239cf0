"""The one table of what each path requires: its scope, whether it is prediction traffic, and
whether it takes the fast lane.

- `scope`: what a caller's credential must grant when auth is on (`predict`, `admin`,
  `metrics`), or None for a path open to anyone. `/metrics` needs its scope only with
  METRICS_AUTH=true.
- `change_scope`: what a method that changes something (anything but GET, HEAD, OPTIONS) needs
  instead, where it differs (reading `/model/variants` is for everyone with `predict`; changing
  it is `admin`).
- `traffic`: counted as prediction traffic (request and latency metrics, admission control and
  the request timeout). Health checks, docs and `/metrics` are not traffic.
- `fast_lane`: a POST served by the fast lane (`server.edge.fast_lane`), past FastAPI's routing.

A path not in the table needs the `predict` scope, as every route that reads the model does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Scope = Literal["predict", "admin", "metrics"]


@dataclass(frozen=True)
class RoutePolicy:
    scope: Scope | None
    traffic: bool = False
    fast_lane: bool = False
    change_scope: Scope | None = None


_OPEN = RoutePolicy(scope=None)
_PREDICTION = RoutePolicy(scope="predict", traffic=True, fast_lane=True)
_METRICS = RoutePolicy(scope="metrics")
DEFAULT_POLICY = RoutePolicy(scope="predict")

ROUTES: dict[str, RoutePolicy] = {
    "/predict": _PREDICTION,
    "/batch-predict": _PREDICTION,
    "/invocations": _PREDICTION,
    "/model/reload": RoutePolicy(scope="admin"),
    "/model/variants": RoutePolicy(scope="predict", change_scope="admin"),
    "/model/drift": DEFAULT_POLICY,
    "/predictions": RoutePolicy(scope="admin"),  # the log holds every caller's inputs
    "/metrics": _METRICS,
    "/prometheus-metrics": _METRICS,
    "/health": _OPEN,
    "/ping": _OPEN,
    "/webhooks/mlflow": _OPEN,  # MLflow cannot send a credential: each delivery is signed instead
    "/docs": _OPEN,
    "/docs/oauth2-redirect": _OPEN,
    "/redoc": _OPEN,
    "/openapi.json": _OPEN,
}

TRAFFIC_PATHS: tuple[str, ...] = tuple(path for path, policy in ROUTES.items() if policy.traffic)
FAST_LANE_PATHS: frozenset[str] = frozenset(path for path, policy in ROUTES.items() if policy.fast_lane)


def policy_for(path: str) -> RoutePolicy:
    return ROUTES.get(path, DEFAULT_POLICY)


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def required_scope(path: str, metrics_auth: bool, method: str = "GET") -> Scope | None:
    """The scope a `method` request to `path` needs, or None when the route is open."""
    policy = policy_for(path)
    scope = policy.scope
    if policy.change_scope is not None and method not in READ_METHODS:
        scope = policy.change_scope
    return None if scope == "metrics" and not metrics_auth else scope


def is_traffic(path: str) -> bool:
    return policy_for(path).traffic
