"""/metrics: the seed's metric names, counting prediction traffic only."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from server.live.loaded_model import LoadedModel
from tests.server.conftest import record
from tests.server.metrics_text import counted, label_sets, names, sample


def _metrics(client: TestClient) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


def test_every_seed_metric_is_exported(client: TestClient, dataset: pd.DataFrame) -> None:
    client.post("/predict", json=record(dataset))
    exported = names(_metrics(client))
    assert {
        "prediction_requests_total",
        "prediction_latency_seconds_bucket",
        "predictions_total",
        "batch_size_bucket",
        "model_loaded",
        "model_info",
        "api_uptime_seconds",
    } <= exported


def test_prometheus_metrics_path_is_the_same_exposition(client: TestClient) -> None:
    assert names(client.get("/prometheus-metrics").text) == names(_metrics(client))


def _champion(model: LoadedModel) -> dict[str, str]:
    """The labels of the champion's series: the process has served other versions before."""
    return {"variant": "champion", "version": str(model.source.version)}


def test_prediction_counts_requests_classes_and_latency(
    client: TestClient, dataset: pd.DataFrame, loaded_champion: LoadedModel
) -> None:
    served = _champion(loaded_champion)
    before = _metrics(client)
    client.post(
        "/batch-predict", json={"records": [record(dataset, 0), record(dataset, 19), record(dataset, 20)]}
    )
    after = _metrics(client)

    def delta(name: str, **labels: str) -> float:
        # A class predicted for the first time has no child in `before` yet.
        return sample(after, name, **labels) - counted(before, name, **labels)

    assert delta("prediction_requests_total", endpoint="/batch-predict", **served) == 1
    assert delta("predictions_total", **{"class": "malignant"}, **served) == 1
    assert delta("predictions_total", **{"class": "benign"}, **served) == 2
    assert delta("prediction_latency_seconds_count", endpoint="/batch-predict", **served) == 1
    assert delta("batch_size_sum", kind="request") == 3


def test_failures_are_counted_by_reason(client: TestClient, loaded_champion: LoadedModel) -> None:
    served = _champion(loaded_champion)
    before = _metrics(client)
    client.post("/predict", json={"feature_1": 1.0})
    client.post("/predict", content=b"{", headers={"content-type": "application/json"})
    after = _metrics(client)
    for reason in ("INVALID_INPUT", "MALFORMED_REQUEST"):
        # A reason seen for the first time has no child in `before`: it counted 0 so far.
        labels = {"endpoint": "/predict", "reason": reason, **served}
        failed = sample(after, "prediction_requests_failed_total", **labels)
        assert failed - counted(before, "prediction_requests_failed_total", **labels) == 1
    assert (
        sample(after, "prediction_requests_total", endpoint="/predict", **served)
        - sample(before, "prediction_requests_total", endpoint="/predict", **served)
        == 2
    )


@pytest.mark.parametrize("path", ["/metrics", "/health", "/ping", "/model/metadata", "/docs"])
def test_non_prediction_routes_are_not_traffic(
    client: TestClient, path: str, loaded_champion: LoadedModel
) -> None:
    served = _champion(loaded_champion)
    before = _metrics(client)
    client.get(path)
    after = _metrics(client)
    for endpoint in ("/predict", "/batch-predict", "/invocations"):
        assert sample(after, "prediction_requests_total", endpoint=endpoint, **served) == sample(
            before, "prediction_requests_total", endpoint=endpoint, **served
        )
    assert path not in {labels["endpoint"] for labels in label_sets(after, "prediction_requests_total")}


def test_model_info_names_the_served_version(client: TestClient, loaded_champion: LoadedModel) -> None:
    text = _metrics(client)
    source = loaded_champion.source
    labels = {
        "name": source.name,
        "version": source.version,
        "alias": "champion",
        "run_id": source.run_id,
        "variant": "champion",
    }
    assert sample(text, "model_info", **labels) == 1
    assert sample(text, "model_loaded") == 1


def test_uptime_grows(client: TestClient) -> None:
    first = sample(_metrics(client), "api_uptime_seconds")
    second = sample(_metrics(client), "api_uptime_seconds")
    assert 0 < first <= second
