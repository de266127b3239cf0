"""The README stays true: its configuration table and its curl example."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi.testclient import TestClient

from registry_scripts.config import RegistrySettings
from server.settings import ServerSettings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_configuration_table_lists_every_setting() -> None:
    table = set()
    for names in re.findall(r"^\| (`[A-Z_]+`(?: / `[A-Z_]+`)*) \|", README, flags=re.MULTILINE):
        table |= set(re.findall(r"`([A-Z_]+)`", names))
    fields = {name.upper() for cls in (ServerSettings, RegistrySettings) for name in cls.model_fields}
    assert fields == table


def test_readme_predict_example_is_answered(client: TestClient) -> None:
    example = re.search(r"/predict -H 'Content-Type: application/json' -d '(\{.*?\})'", README, re.DOTALL)
    assert example is not None
    response = client.post("/predict", json=json.loads(example.group(1)))
    assert response.status_code == 200
    assert response.json()["label"] == "malignant"
