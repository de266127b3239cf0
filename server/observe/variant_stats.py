"""Each variant's numbers since its version was loaded, read back from the server's own metrics,
so they add up across workers exactly as `/metrics` does (and across replicas in
`registry_scripts.compare`, which sums the counts and buckets returned here).

A variant's series carry its `version`, so "since this version was loaded" is the series of that
version (in this process, or in this server's workers).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric

QUANTILES = (0.5, 0.9, 0.99)
SHADOW_OUTCOMES = ("scored", "dropped", "failed", "skipped")
Buckets = list[tuple[float, float]]  # (upper bound, cumulative count), +Inf last


@dataclass
class VariantNumbers:
    requests: float = 0.0
    errors: float = 0.0
    rows: float = 0.0
    classes: dict[str, float] = field(default_factory=dict)
    latency_buckets: Buckets = field(default_factory=list)


@dataclass
class ShadowNumbers:
    requests: dict[str, float] = field(default_factory=dict)
    same_class: float = 0.0
    different_class: float = 0.0
    difference_buckets: Buckets = field(default_factory=list)

    @property
    def rows_compared(self) -> float:
        return self.same_class + self.different_class

    @property
    def seen(self) -> bool:
        """Whether the shadow ever had a copy of this version's."""
        return self.rows_compared > 0 or any(self.requests.values())


def _matching(
    families: Iterable[Metric], name: str, labels: dict[str, str]
) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in families
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]


def _buckets(samples: list[tuple[dict[str, str], float]]) -> Buckets:
    """Cumulative buckets summed over every series given (endpoints, workers)."""
    totals: dict[float, float] = {}
    for labels, value in samples:
        bound = float(labels["le"])
        totals[bound] = totals.get(bound, 0.0) + value
    return sorted(totals.items())


def variant_numbers(families: list[Metric], variant: str, version: str) -> VariantNumbers:
    labels = {"variant": variant, "version": version}
    classes: dict[str, float] = {}
    for sample_labels, value in _matching(families, "predictions_total", labels):
        classes[sample_labels["class"]] = classes.get(sample_labels["class"], 0.0) + value
    return VariantNumbers(
        requests=sum(v for _, v in _matching(families, "prediction_requests_total", labels)),
        errors=sum(v for _, v in _matching(families, "prediction_requests_failed_total", labels)),
        rows=sum(classes.values()),
        classes=dict(sorted(classes.items())),
        latency_buckets=_buckets(_matching(families, "prediction_latency_seconds_bucket", labels)),
    )


def shadow_numbers(families: list[Metric], version: str) -> ShadowNumbers:
    labels = {"version": version}
    requests: dict[str, float] = {}
    for sample_labels, value in _matching(families, "shadow_requests_total", labels):
        requests[sample_labels["outcome"]] = requests.get(sample_labels["outcome"], 0.0) + value
    agreement = {"same_class": 0.0, "different_class": 0.0}
    for sample_labels, value in _matching(families, "shadow_agreement_total", labels):
        agreement[sample_labels["outcome"]] = agreement.get(sample_labels["outcome"], 0.0) + value
    return ShadowNumbers(
        requests={outcome: requests.get(outcome, 0.0) for outcome in SHADOW_OUTCOMES},
        same_class=agreement["same_class"],
        different_class=agreement["different_class"],
        difference_buckets=_buckets(_matching(families, "shadow_probability_difference_bucket", labels)),
    )


def histogram_quantile(quantile: float, buckets: Buckets) -> float | None:
    """Prometheus's `histogram_quantile` over cumulative buckets: linear within the bucket the
    rank falls in, the highest finite bound when it falls in +Inf; None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = quantile * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def quantiles(buckets: Buckets) -> dict[str, float | None]:
    return {f"p{round(q * 100)}": histogram_quantile(q, buckets) for q in QUANTILES}
