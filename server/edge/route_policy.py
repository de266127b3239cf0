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
- `open_inference`: errors take the Open Inference Protocol's shape (`{"error": "..."}`, as KServe
  and Triton answer), not the server's own.
- `grpc`: a gRPC method (`/package.Service/Method`, served on GRPC_PORT), not an HTTP path.

Paths that name a model (`/v2/models/{name}/infer`, `/v1/models/{name}:predict`) are looked up by
their template (`route_template`), which is also their metrics label: a client's model name never
becomes a label value. A path not in the table needs the `predict` scope, as every route that
reads the model does.
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
    open_inference: bool = False
    grpc: bool = False


_OPEN = RoutePolicy(scope=None)
_PREDICTION = RoutePolicy(scope="predict", traffic=True, fast_lane=True)
_METRICS = RoutePolicy(scope="metrics")
DEFAULT_POLICY = RoutePolicy(scope="predict")
_OIP_OPEN = RoutePolicy(scope=None, open_inference=True)
_OIP_READ = RoutePolicy(scope="predict", open_inference=True)
_OIP_INFER = RoutePolicy(scope="predict", traffic=True, fast_lane=True, open_inference=True)
_OIP_DEFAULT = RoutePolicy(scope="predict", open_inference=True)

V2_MODEL = "/v2/models/{name}"
V2_MODEL_VERSION = "/v2/models/{name}/versions/{version}"
V2_INFER = "/v2/models/{name}/infer"
V2_VERSION_INFER = "/v2/models/{name}/versions/{version}/infer"
V1_MODEL = "/v1/models/{name}"
V1_PREDICT = "/v1/models/{name}:predict"

GRPC_SERVICE = "inference.GRPCInferenceService"
GRPC_INFER = f"/{GRPC_SERVICE}/ModelInfer"
_GRPC_OPEN = RoutePolicy(scope=None, grpc=True)
_GRPC_READ = RoutePolicy(scope="predict", grpc=True)

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
    # The Open Inference Protocol (REST, version 2) and KServe's V1: probes are open, as in KServe.
    "/v2": _OIP_READ,
    "/v2/health/live": _OIP_OPEN,
    "/v2/health/ready": _OIP_OPEN,
    V2_MODEL: _OIP_READ,
    V2_MODEL + "/ready": _OIP_READ,
    V2_MODEL_VERSION: _OIP_READ,
    V2_MODEL_VERSION + "/ready": _OIP_READ,
    V2_INFER: _OIP_INFER,
    V2_VERSION_INFER: _OIP_INFER,
    V1_MODEL: _OIP_READ,
    V1_PREDICT: _OIP_INFER,
    # The same protocol over gRPC; health checks and reflection are open, as probes need them.
    f"/{GRPC_SERVICE}/ServerLive": _GRPC_OPEN,
    f"/{GRPC_SERVICE}/ServerReady": _GRPC_OPEN,
    f"/{GRPC_SERVICE}/ModelReady": _GRPC_READ,
    f"/{GRPC_SERVICE}/ServerMetadata": _GRPC_READ,
    f"/{GRPC_SERVICE}/ModelMetadata": _GRPC_READ,
    GRPC_INFER: RoutePolicy(scope="predict", traffic=True, grpc=True),
    "/grpc.health.v1.Health/Check": _GRPC_OPEN,
    "/grpc.health.v1.Health/Watch": _GRPC_OPEN,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": _GRPC_OPEN,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": _GRPC_OPEN,
}

_V2_MODELS = "/v2/models/"
_V1_MODELS = "/v1/models/"
_V2_LEAVES = frozenset({"ready", "infer"})


def route_template(path: str) -> str:
    """The table's key for `path`: the path itself, or the template of a path naming a model."""
    if path in ROUTES:
        return path
    if path.startswith(_V2_MODELS):
        parts = path[len(_V2_MODELS) :].split("/")
        if parts[0]:
            if len(parts) >= 3 and parts[1] == "versions" and parts[2]:
                base, leaf = V2_MODEL_VERSION, parts[3:]
            else:
                base, leaf = V2_MODEL, parts[1:]
            if not leaf:
                return base
            if len(leaf) == 1 and leaf[0] in _V2_LEAVES:
                return f"{base}/{leaf[0]}"
    elif path.startswith(_V1_MODELS):
        rest = path[len(_V1_MODELS) :]
        if rest and "/" not in rest:
            return V1_PREDICT if rest.endswith(":predict") and len(rest) > len(":predict") else V1_MODEL
    return path


TRAFFIC_PATHS: tuple[str, ...] = tuple(path for path, policy in ROUTES.items() if policy.traffic)
HTTP_PATHS: tuple[str, ...] = tuple(path for path, policy in ROUTES.items() if not policy.grpc)
FAST_LANE_PATHS: frozenset[str] = frozenset(path for path, policy in ROUTES.items() if policy.fast_lane)


def policy_for(path: str) -> RoutePolicy:
    """The policy of an HTTP request for `path` (a gRPC method's path over HTTP is just a path
    this server does not serve)."""
    policy = ROUTES.get(path)
    if policy is not None:
        return DEFAULT_POLICY if policy.grpc else policy
    template = route_template(path)
    if template in ROUTES:
        return ROUTES[template]
    return _OIP_DEFAULT if path.startswith(("/v2/", "/v1/")) or path == "/v1" else DEFAULT_POLICY


def grpc_policy(method: str) -> RoutePolicy:
    """The policy of a gRPC method (`/package.Service/Method`); one not in the table needs `predict`."""
    policy = ROUTES.get(method)
    return policy if policy is not None and policy.grpc else RoutePolicy(scope="predict", grpc=True)


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
