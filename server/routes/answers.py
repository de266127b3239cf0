"""What happens after a prediction route has its answer: the shadow challenger's copy, and the
prediction log's entry (when the log is on and the request is sampled)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import Request

from model_wrapper import Prediction
from server.edge.request_context import CALLER_STATE, STARTED_STATE, current_request_id
from server.edge.route_path import route_path
from server.edge.route_policy import route_template
from server.inference.variants import Served
from server.observe.prediction_log.entry import Entry, Source
from server.services import Services


def answered(
    request: Request,
    services: Services,
    served: Served,
    features: np.ndarray | None,
    answer: Prediction | list[Any] | None,
) -> None:
    """The request's rows (None: MLflow's own parsers read them) were answered with `answer`."""
    if features is not None and answer is not None:
        services.router.answered(served, features, answer)
    else:
        services.router.answered_unread(served)
    if logs_this(services):
        log_answer(request, services, served, features, answer)


def answered_call(
    services: Services, served: Served, features: np.ndarray, answer: Prediction, call: CallFacts
) -> None:
    """`answered` for a call that is no HTTP request (gRPC): its facts come from `call`."""
    services.router.answered(served, features, answer)
    log = services.prediction_log
    if log is not None and log.sampled():
        log.offer(_entry_of(served, features, answer, call.route, call.started, call.caller))


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the prediction log records of a call besides its rows: its route (a gRPC method),
    when it started (`time.perf_counter`) and the authenticated caller's key id."""

    route: str
    started: float
    caller: str | None


def logs_this(services: Services) -> bool:
    """Whether this request goes to the prediction log (PREDICTION_LOG_SAMPLE decides)."""
    log = services.prediction_log
    return log is not None and log.sampled()


def log_answer(
    request: Request,
    services: Services,
    served: Served,
    features: np.ndarray | None,
    answer: Prediction | list[Any] | None,
) -> None:
    """Hand a request already sampled by `logs_this` to the prediction log."""
    log = services.prediction_log
    if log is not None:
        log.offer(_entry(request, served, features, answer))


def _entry(
    request: Request, served: Served, features: np.ndarray | None, answer: Prediction | list[Any] | None
) -> Entry:
    scope = request.scope
    state = scope.get("state", {})
    route = route_template(route_path(scope))
    return _entry_of(served, features, answer, route, state.get(STARTED_STATE), state.get(CALLER_STATE))


def _entry_of(
    served: Served,
    features: np.ndarray | None,
    answer: Prediction | list[Any] | None,
    route: str,
    started: float | None,
    caller: str | None,
) -> Entry:
    """The log's entry for an answer given now, whichever transport carried it."""
    return Entry(
        time.time(),
        current_request_id.get() or "",
        route,
        _source(served),
        features,
        answer,
        (time.perf_counter() - started) * 1000 if started is not None else 0.0,
        caller,
    )


# The log's Source for the model each variant serves now: one per variant, replaced when the
# variant's model is (so a retired model is not kept alive by it).
_sources: dict[str, tuple[Served, Source]] = {}


def _source(served: Served) -> Source:
    cached = _sources.get(served.variant)
    if cached is not None and cached[0] is served:
        return cached[1]
    model = served.model
    runtime = model.runtime
    source = Source(
        model_name=model.source.name,
        version=model.source.version,
        variant=served.variant,
        feature_names=model.feature_names,
        class_names=runtime.class_names if runtime is not None else None,
    )
    _sources[served.variant] = (served, source)
    return source
