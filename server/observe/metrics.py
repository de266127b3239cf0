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
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 2000, 5000, 10000)

REQUESTS = Counter("prediction_requests", "Prediction requests received, by endpoint.", ["endpoint"])
REQUESTS_FAILED = Counter(
    "prediction_requests_failed",
    "Prediction requests answered with an error, by endpoint and error code.",
    ["endpoint", "reason"],
)
LATENCY = Histogram(
    "prediction_latency_seconds",
    "Time from request to response on prediction endpoints.",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "prediction_requests_in_flight",
    "Prediction requests received and not yet answered.",
    multiprocess_mode="livesum",
)
PREDICTIONS = Counter("predictions", "Rows predicted, by predicted class name.", ["class"])
BATCH_SIZE = Histogram(
    "batch_size",
    "Rows per request (kind=request) and per model call after micro-batching (kind=model_call).",
    ["kind"],
    buckets=BATCH_BUCKETS,
)
MODEL_LOADED = Gauge("model_loaded", "1 while a model is loaded and serving.", multiprocess_mode="livemin")
RELOADS = Counter(
    "model_reloads",
    "Attempts to serve a new version, by outcome (swapped, refused, failed).",
    ["outcome"],
)
RELOAD_FAILURES = Counter(
    "model_reload_failures", "New versions that could not be loaded or were refused by the gate."
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
    "The model served, as labels; value 1.",
    ["name", "version", "alias", "run_id"],
    multiprocess_mode="liveall",
)


class UptimeCollector(Collector):
    """`api_uptime_seconds`, computed when scraped."""

    def __init__(self, started_at: float) -> None:
        self._started_at = started_at

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "api_uptime_seconds", "Seconds since the server started.", value=time.time() - self._started_at
        )


# Label lookups take a lock and build tuples: resolve the fixed label sets once, off the hot path.
_REQUESTS_BY_ENDPOINT: dict[str, Counter] = {}
_LATENCY_BY_ENDPOINT: dict[str, Histogram] = {}
_REQUEST_ROWS = BATCH_SIZE.labels("request")
_MODEL_CALL_ROWS = BATCH_SIZE.labels("model_call")


def bind_endpoints(endpoints: Iterable[str]) -> None:
    """Make the request series of each traffic endpoint (at zero, so they are scraped before the
    first request), and resolve their labels once."""
    for endpoint in endpoints:
        _REQUESTS_BY_ENDPOINT[endpoint] = REQUESTS.labels(endpoint)
        _LATENCY_BY_ENDPOINT[endpoint] = LATENCY.labels(endpoint)


def record_request(endpoint: str, seconds: float, status: int, reason: str | None) -> None:
    """Count one prediction request and its latency; failures by reason."""
    _REQUESTS_BY_ENDPOINT[endpoint].inc()
    _LATENCY_BY_ENDPOINT[endpoint].observe(seconds)
    if status >= 400:
        REQUESTS_FAILED.labels(endpoint, reason or f"HTTP_{status}").inc()


def record_predictions(labels: np.ndarray) -> None:
    """Count predicted rows by class name, and the request's row count."""
    _REQUEST_ROWS.observe(len(labels))
    if len(labels) == 1:
        PREDICTIONS.labels(labels[0]).inc()
        return
    for name, count in collections.Counter(labels.tolist()).items():
        PREDICTIONS.labels(name).inc(count)


def record_reload(outcome: str, seconds: float) -> None:
    RELOADS.labels(outcome).inc()
    RELOAD_SECONDS.observe(seconds)
    if outcome != "swapped":
        RELOAD_FAILURES.inc()


def record_request_rows(rows: int) -> None:
    _REQUEST_ROWS.observe(rows)


def record_model_call(rows: int) -> None:
    _MODEL_CALL_ROWS.observe(rows)


_published: tuple[str, str, str, str] | None = None


def set_model(name: str | None, version: str | None, alias: str | None, run_id: str | None) -> None:
    """Publish the served model: `model_info` is 1 for exactly one label set at a time."""
    global _published
    labels = (name or "", version or "", alias or "", run_id or "")
    if _published is not None and _published != labels:
        # In multiprocess mode a removed child's last value stays on disk: zero it first.
        MODEL_INFO.labels(*_published).set(0)
        MODEL_INFO.remove(*_published)
    MODEL_INFO.labels(*labels).set(1)
    MODEL_LOADED.set(1)
    _published = labels


class Exposition:
    """Renders the text format, adding up workers when running in multiprocess mode."""

    def __init__(self, started_at: float, multiprocess_dir: Path | None) -> None:
        self._multiprocess_dir = multiprocess_dir
        self._uptime = UptimeCollector(started_at)
        if not self._multiprocess_dir:
            self._registry = CollectorRegistry()
            self._registry.register(_DefaultRegistryView())
            self._registry.register(self._uptime)

    def render(self) -> bytes:
        if self._multiprocess_dir:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=str(self._multiprocess_dir))
            registry.register(self._uptime)
            return generate_latest(registry)
        return generate_latest(self._registry)

    # The classic text format every Prometheus version scrapes; our names need no escaping.
    content_type = CONTENT_TYPE_PLAIN_0_0_4


class _DefaultRegistryView(Collector):
    """The default registry's metrics, so the per-app uptime collector never lands in it."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
