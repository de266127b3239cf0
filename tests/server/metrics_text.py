"""Reading values out of a Prometheus text exposition, for tests that compare before and after.

Nothing here turns a missing metric into a number: a sample that is not in the exposition fails
the test that asked for it. The one place where "not there" legitimately means 0 is a labelled
counter (or histogram) that has not counted anything for those labels yet: prometheus-client
creates a child on its first increment, so the family is exported without it. `counted` says so
explicitly, and still fails when the family itself is missing.
"""

from __future__ import annotations

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

# The samples a counter or histogram family exports, after its name.
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created")}


def _families(text: str) -> list[Metric]:
    return list(text_string_to_metric_families(text))


def _matches(text: str, metric: str, labels: dict[str, str]) -> list[float]:
    return [
        s.value
        for family in _families(text)
        for s in family.samples
        if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def sample(text: str, metric: str, /, **labels: str) -> float:
    """The value of the one sample named `metric` whose labels include `labels`; fails when there
    is none, or more than one."""
    values = _matches(text, metric, labels)
    assert len(values) == 1, f"{len(values)} samples {metric}{labels} in the exposition, not one"
    return values[0]


def counted(text: str, metric: str, /, **labels: str) -> float:
    """A counter's (or a histogram's `_count`, `_sum`, `_bucket`) value for `labels`: 0 when its
    family is exported but holds no child for those labels yet. Fails when the family is not
    exported at all, or when its children do not carry the label names asked for (a typo)."""
    family = _family_of(text, metric)
    values = _matches(text, metric, labels)
    if values:
        assert len(values) == 1, f"{len(values)} samples {metric}{labels} in the exposition, not one"
        return values[0]
    children = [s.labels for s in family.samples if s.name == metric]
    assert all(set(labels) <= set(child) for child in children), (
        f"{metric} has no label among {sorted(labels)} (its children carry {children[:1]})"
    )
    return 0.0


def _family_of(text: str, metric: str) -> Metric:
    """The counter or histogram family that exports samples named `metric`."""
    for family in _families(text):
        if metric in {family.name + suffix for suffix in _SUFFIXES.get(family.type, ())}:
            return family
    raise AssertionError(f"no counter or histogram family exports {metric}")


def label_sets(text: str, metric: str) -> list[dict[str, str]]:
    """The label sets of every sample named `metric` (empty when there is none)."""
    return [s.labels for family in _families(text) for s in family.samples if s.name == metric]


def names(text: str) -> set[str]:
    return {s.name for family in _families(text) for s in family.samples}


def model_info_pids(text: str) -> set[str]:
    """The processes that report a loaded model (with several workers, each sets `model_info`
    to 1 with its `pid` once its model is loaded)."""
    return {
        s.labels["pid"]
        for family in _families(text)
        for s in family.samples
        if s.name == "model_info" and "pid" in s.labels and s.value == 1
    }


def served_versions(text: str) -> dict[str, str]:
    """Each worker's served version (with several workers): its `model_info` sample at 1, by `pid`."""
    return {
        s.labels["pid"]: s.labels["version"]
        for family in _families(text)
        for s in family.samples
        if s.name == "model_info" and "pid" in s.labels and s.value == 1
    }
