"""Every Prometheus metric the server exports, defined once, and the exposition.

Traffic metrics count prediction endpoints only: `/metrics`, health checks and docs are not
traffic. With several workers, prometheus-client's multiprocess mode adds the workers' values
up; `python -m server` points PROMETHEUS_MULTIPROC_DIR at a fresh folder before any worker
imports this module.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# 100 µs … 10 s: a single-row fast path answers in well under a millisecond.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
PROBABILITY_DIFFERENCE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 2000, 5000, 10000)

# `variant` (champion, challenger; `none` for a request refused before a model was chosen: a
# credential, a rate limit, admission) and `version` say which model a request met, so the two
# variants compare series by series. Each version served adds its own series.
VARIANT_LABELS = ("variant", "version")
NO_VARIANT = ("none", "")
# `endpoint` is the route's template (`/v2/models/{name}/infer`) or the gRPC method
# (`/inference.GRPCInferenceService/ModelInfer`); `protocol` is `http` or `grpc`.
REQUESTS = Counter(
    "prediction_requests",
    "Prediction requests received, by endpoint, protocol and variant.",
    ["endpoint", "protocol", *VARIANT_LABELS],
)
REQUESTS_FAILED = Counter(
    "prediction_requests_failed",
    "Prediction requests answered with an error, by endpoint, protocol, error code and variant.",
    ["endpoint", "protocol", "reason", *VARIANT_LABELS],
)
LATENCY = Histogram(
    "prediction_latency_seconds",
    "Time from request to response on prediction endpoints, by protocol and variant.",
    ["endpoint", "protocol", *VARIANT_LABELS],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "prediction_requests_in_flight",
    "Prediction requests received and not yet answered.",
    multiprocess_mode="livesum",
)
PREDICTIONS = Counter(
    "predictions",
    "Rows predicted, by predicted class name and variant (a shadow challenger's rows included).",
    ["class", *VARIANT_LABELS],
)
BATCH_SIZE = Histogram(
    "batch_size",
    "Rows per request (kind=request) and per model call after micro-batching (kind=model_call).",
    ["kind"],
    buckets=BATCH_BUCKETS,
)
MODEL_LOADED = Gauge("model_loaded", "1 while a model is loaded and serving.", multiprocess_mode="livemin")
RELOADS = Counter(
    "model_reloads",
    "Attempts to serve a new version, by outcome (swapped, refused, failed) and variant.",
    ["outcome", "variant"],
)
RELOAD_FAILURES = Counter(
    "model_reload_failures",
    "New versions that could not be loaded or were refused by the gate, by variant.",
    ["variant"],
)
RELOAD_SECONDS = Histogram(
    "model_reload_seconds",
    "Time from deciding to load a version to serving it (or refusing it).",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
REGISTRY_REACHABLE = Gauge(
    "registry_reachable",
    "1 when the last registry check succeeded, 0 while the registry cannot be reached.",
    multiprocess_mode="livemin",
)
MODEL_INFO = Gauge(
    "model_info",
    "The model each variant serves, as labels; value 1.",
    ["name", "version", "alias", "run_id", "variant"],
    multiprocess_mode="liveall",
)
CHALLENGER_TRAFFIC_PERCENT = Gauge(
    "challenger_traffic_percent",
    "The share of requests the challenger answers now (0 without a challenger, or in shadow mode).",
    multiprocess_mode="livemax",
)
SHADOW_REQUESTS = Counter(
    "shadow_requests",
    "Copies of champion requests for the shadow challenger, by outcome (scored, dropped when its "
    "queue was full, failed when it raised, skipped when no rows could be copied).",
    ["version", "outcome"],
)
SHADOW_AGREEMENT = Counter(
    "shadow_agreement",
    "Rows scored by both variants in shadow mode, by whether they predicted the same class.",
    ["version", "outcome"],
)
SHADOW_PROBABILITY_DIFFERENCE = Histogram(
    "shadow_probability_difference",
    "Per row scored in shadow mode, the largest absolute difference between the two variants' "
    "class probabilities.",
    ["version"],
    buckets=PROBABILITY_DIFFERENCE_BUCKETS,
)

PREDICTION_LOG_WRITTEN = Counter("prediction_log_written", "Rows written to the prediction log's database.")
PREDICTION_LOG_DROPPED = Counter(
    "prediction_log_dropped",
    "Rows not written to the prediction log: its queue was full (the database slow or down), the "
    "server stopped before it could write them, or the database refused them for good.",
    ["reason"],
)
PREDICTION_LOG_QUEUE_ROWS = Gauge(
    "prediction_log_queue_rows",
    "Rows waiting to be written to the prediction log.",
    multiprocess_mode="livesum",
)
PREDICTION_LOG_WRITE_ERRORS = Counter(
    "prediction_log_write_errors",
    "Failed attempts to write a batch to the prediction log (its rows wait and are retried).",
)
# Every worker computes drift from the same database: the most recent value is the answer.
FEATURE_DRIFT_PSI = Gauge(
    "feature_drift_psi",
    "Population stability index of a feature over the live window against the version's training "
    "data (NaN once the version is no longer served).",
    ["feature", "version"],
    multiprocess_mode="mostrecent",
)
FEATURE_DRIFT_KS = Gauge(
    "feature_drift_ks",
    "Two-sample Kolmogorov-Smirnov statistic of a feature over the live window against the "
    "version's training data (NaN once the version is no longer served).",
    ["feature", "version"],
    multiprocess_mode="mostrecent",
)
PREDICTED_CLASS_RATIO = Gauge(
    "predicted_class_ratio",
    "A class's share of the predictions in the live window over its share of the training data.",
    ["class", "version"],
    multiprocess_mode="mostrecent",
)
DRIFT_WINDOW_ROWS = Gauge(
    "drift_window_rows",
    "Logged rows in a version's live drift window.",
    ["version"],
    multiprocess_mode="mostrecent",
)


class UptimeCollector(Collector):
    """`api_uptime_seconds`, computed when scraped."""

    def __init__(self, started_at: float) -> None:
        self._started_at = started_at

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "api_uptime_seconds", "Seconds since the server started.", value=time.time() - self._started_at
        )


# Label lookups take a lock and build tuples: resolve each label set once, off the hot path.
_TRAFFIC_ENDPOINTS: list[str] = []
_REQUEST_SERIES: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
_REQUEST_ROWS = BATCH_SIZE.labels("request")
_MODEL_CALL_ROWS = BATCH_SIZE.labels("model_call")


def bind_endpoints(endpoints: Iterable[str]) -> None:
    """Name the traffic endpoints, whose request series each served variant gets at zero (those
    published before this call included)."""
    for endpoint in endpoints:
        if endpoint not in _TRAFFIC_ENDPOINTS:
            _TRAFFIC_ENDPOINTS.append(endpoint)
        for labels in _published.values():
            _request_series(endpoint, (labels[4], labels[1]))


def protocol_of(endpoint: str) -> str:
    """`grpc` for a gRPC method (`/package.Service/Method`), else `http`."""
    return "grpc" if "." in endpoint.split("/", 2)[1] else "http"


def _request_series(endpoint: str, variant: tuple[str, str]) -> tuple[Counter, Histogram]:
    """Bound once per endpoint and variant: every request's path looks them up."""
    key = (endpoint, *variant)
    series = _REQUEST_SERIES.get(key)
    if series is None:
        labels = (endpoint, protocol_of(endpoint), *variant)
        series = _REQUEST_SERIES[key] = (REQUESTS.labels(*labels), LATENCY.labels(*labels))
    return series


def record_request(
    endpoint: str, seconds: float, status: int, reason: str | None, variant: tuple[str, str] = NO_VARIANT
) -> None:
    """Count one prediction request and its latency, by the (variant, version) that met it;
    failures by reason."""
    requests, latency = _request_series(endpoint, variant)
    requests.inc()
    latency.observe(seconds)
    if status >= 400:
        REQUESTS_FAILED.labels(endpoint, protocol_of(endpoint), reason or f"HTTP_{status}", *variant).inc()


def record_predictions(labels: np.ndarray, variant: tuple[str, str], *, answered: bool = True) -> None:
    """Count predicted rows by class name and variant, and (for an answer, not a shadow's copy)
    the request's row count."""
    if answered:
        _REQUEST_ROWS.observe(len(labels))
    if len(labels) == 1:
        PREDICTIONS.labels(labels[0], *variant).inc()
        return
    for name, count in collections.Counter(labels.tolist()).items():
        PREDICTIONS.labels(name, *variant).inc(count)


def record_shadow(version: str, outcome: str, *, copies: int = 1) -> None:
    """Count requests copied to the shadow challenger, by what became of them."""
    SHADOW_REQUESTS.labels(version, outcome).inc(copies)


def record_agreement(version: str, same: np.ndarray, differences: np.ndarray | None) -> None:
    """Count the shadow's rows by agreement, and observe each row's probability difference."""
    agreed = int(np.count_nonzero(same))
    if agreed:
        SHADOW_AGREEMENT.labels(version, "same_class").inc(agreed)
    if len(same) - agreed:
        SHADOW_AGREEMENT.labels(version, "different_class").inc(len(same) - agreed)
    if differences is not None:
        histogram = SHADOW_PROBABILITY_DIFFERENCE.labels(version)
        for difference in differences.tolist():
            histogram.observe(difference)


def record_reload(outcome: str, seconds: float, variant: str) -> None:
    RELOADS.labels(outcome, variant).inc()
    RELOAD_SECONDS.observe(seconds)
    if outcome != "swapped":
        RELOAD_FAILURES.labels(variant).inc()


def record_request_rows(rows: int) -> None:
    _REQUEST_ROWS.observe(rows)


def record_model_call(rows: int) -> None:
    _MODEL_CALL_ROWS.observe(rows)


_published: dict[str, tuple[str, str, str, str, str]] = {}


def set_model(
    variant: str, name: str | None, version: str | None, alias: str | None, run_id: str | None
) -> None:
    """Publish a variant's model: `model_info` is 1 for exactly one label set per variant, and
    the variant's request series exist (at zero) before its first request."""
    labels = (name or "", version or "", alias or "", run_id or "", variant)
    clear_model(variant, keep=labels)
    MODEL_INFO.labels(*labels).set(1)
    _published[variant] = labels
    for endpoint in _TRAFFIC_ENDPOINTS:
        _request_series(endpoint, (variant, version or ""))
    if variant == "champion":
        MODEL_LOADED.set(1)


def clear_model(variant: str, *, keep: tuple[str, ...] | None = None) -> None:
    """A variant serves nothing any more (or something else): its `model_info` goes."""
    published = _published.pop(variant, None)
    if published is not None and published != keep:
        # In multiprocess mode a removed child's last value stays on disk: zero it first.
        MODEL_INFO.labels(*published).set(0)
        MODEL_INFO.remove(*published)


class Exposition:
    """Renders the text format, adding up workers when running in multiprocess mode."""

    def __init__(self, started_at: float, multiprocess_dir: Path | None) -> None:
        self._multiprocess_dir = multiprocess_dir
        self._uptime = UptimeCollector(started_at)
        if not self._multiprocess_dir:
            self._registry = CollectorRegistry()
            self._registry.register(_DefaultRegistryView())
            self._registry.register(self._uptime)

    def families(self) -> list[Metric]:
        """Every metric family, added up across workers as `render` does."""
        return list(self._current().collect())

    def render(self) -> bytes:
        return generate_latest(self._current())

    def _current(self) -> CollectorRegistry:
        """The registry to read now: in multiprocess mode, every worker's files as they are."""
        if not self._multiprocess_dir:
            return self._registry
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self._multiprocess_dir))
        registry.register(self._uptime)
        return registry

    # The classic text format every Prometheus version scrapes; our names need no escaping.
    content_type = CONTENT_TYPE_PLAIN_0_0_4


class _DefaultRegistryView(Collector):
    """The default registry's metrics, so the per-app uptime collector never lands in it."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
