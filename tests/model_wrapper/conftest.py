"""Fixtures for the wrapper: the champion model as MLflow loads it, and the full dataset."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.pyfunc import PyFuncModel

from registry_scripts.dataset import load_frame
from registry_scripts.tracking_server import TrackingServer


@pytest.fixture(scope="session")
def champion_path(
    tracking_server: TrackingServer, champion_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The champion's files, downloaded from the registry once."""
    target = tmp_path_factory.mktemp("champion")
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=champion_uri, dst_path=str(target)))


@pytest.fixture(scope="session")
def pyfunc_model(champion_path: Path) -> PyFuncModel:
    return mlflow.pyfunc.load_model(str(champion_path))


@pytest.fixture(scope="session")
def features() -> pd.DataFrame:
    """All 569 rows of the dataset with the contract's column names."""
    return load_frame()[0]
