"""The tests' exposition reader never turns a missing metric into a number."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from tests.server.metrics_text import counted, sample


@pytest.fixture
def text() -> str:
    """A real exposition: a labelled counter with one child, one without any, and a gauge."""
    registry = CollectorRegistry()
    Counter("hits", "Hits.", ["route"], registry=registry).labels("/a").inc(3)
    Counter("misses", "Misses.", ["route"], registry=registry)
    Gauge("up", "Up.", registry=registry).set(1)
    return generate_latest(registry).decode()


def test_sample_reads_a_present_sample(text: str) -> None:
    assert sample(text, "hits_total", route="/a") == 3
    assert sample(text, "up") == 1


@pytest.mark.parametrize(
    ("metric", "labels"),
    [("absent_total", {}), ("hits_total", {"route": "/b"}), ("misses_total", {"route": "/a"})],
    ids=["absent family", "absent child", "family without children"],
)
def test_sample_fails_on_an_absent_sample(text: str, metric: str, labels: dict[str, str]) -> None:
    with pytest.raises(AssertionError, match="0 samples"):
        sample(text, metric, **labels)


def test_counted_is_zero_for_a_child_not_created_yet(text: str) -> None:
    assert counted(text, "misses_total", route="/a") == 0
    assert counted(text, "hits_total", route="/b") == 0
    assert counted(text, "hits_total", route="/a") == 3


def test_counted_fails_on_an_absent_family(text: str) -> None:
    with pytest.raises(AssertionError, match="no counter or histogram family exports absent_total"):
        counted(text, "absent_total", route="/a")


def test_counted_fails_on_a_gauge(text: str) -> None:
    with pytest.raises(AssertionError, match="no counter or histogram family exports up"):
        counted(text, "up")


def test_counted_fails_on_a_label_its_children_lack(text: str) -> None:
    with pytest.raises(AssertionError, match="has no label among"):
        counted(text, "hits_total", endpoint="/a")
