"""/model/metadata and /model/features."""

from __future__ import annotations

from fastapi.testclient import TestClient
from mlflow import MlflowClient

from server.live.loaded_model import LoadedModel


def test_metadata_describes_the_registered_version(
    client: TestClient, loaded_champion: LoadedModel, client_mlflow: MlflowClient
) -> None:
    body = client.get("/model/metadata").json()
    registered = client_mlflow.get_model_version_by_alias("breast-cancer-classifier", "champion")
    assert body["name"] == "breast-cancer-classifier"
    assert body["version"] == registered.version
    assert body["alias"] == "champion"
    assert body["run_id"] == registered.run_id
    assert body["model_uri"] == "models:/breast-cancer-classifier@champion"
    assert body["source_uri"].startswith("mlflow-artifacts:/")
    assert set(body["metrics"]) == {"accuracy", "f1", "precision", "recall", "roc_auc"}
    assert body["metrics"] == client_mlflow.get_run(registered.run_id).data.metrics
    assert body["classes"] == [{"value": 0, "name": "malignant"}, {"value": 1, "name": "benign"}]
    assert body["feature_count"] == 30
    assert body["fast_path"] is True
    assert [c["name"] for c in body["signature"]["inputs"]] == [f"feature_{i}" for i in range(1, 31)]
    assert body["signature"]["outputs"][0] == {"type": "long", "name": "prediction", "required": True}
    assert body["loaded_at"] == loaded_champion.loaded_at.isoformat().replace("+00:00", "Z")


def test_features_lists_names_in_order_with_types(client: TestClient) -> None:
    body = client.get("/model/features").json()
    assert body["count"] == 30
    assert body["features"][0] == {"name": "feature_1", "type": "double", "required": True}
    assert [f["name"] for f in body["features"]] == [f"feature_{i}" for i in range(1, 31)]
