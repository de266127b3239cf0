"""Reading values out of a Prometheus text exposition, for tests that compare before and after."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def sample(text: str, metric: str, /, **labels: str) -> float:
    """The value of sample `metric` whose labels include `labels` (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def names(text: str) -> set[str]:
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def model_info_pids(text: str) -> set[str]:
    """The processes that report a loaded model (with several workers, each sets `model_info`
    with its `pid` once its model is loaded)."""
    return {
        s.labels["pid"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "model_info" and "pid" in s.labels
    }
