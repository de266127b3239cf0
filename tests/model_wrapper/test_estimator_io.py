"""Estimators are stored with skops and an explicit allowlist; anything else is refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier
from sklearn.preprocessing import FunctionTransformer

from model_wrapper.estimator_io import UntrustedArtifactError, load_estimator, save_estimator
from registry_scripts.dataset import load_frame


def _fitted_forest() -> RandomForestClassifier:
    features, target, _ = load_frame()
    return RandomForestClassifier(n_estimators=3, random_state=0).fit(features.to_numpy(), target.to_numpy())


def test_round_trip_keeps_predictions(tmp_path: Path) -> None:
    forest = _fitted_forest()
    path = tmp_path / "forest.skops"
    save_estimator(forest, path)
    features = load_frame()[0].to_numpy()
    np.testing.assert_array_equal(
        load_estimator(path).predict_proba(features), forest.predict_proba(features)
    )


def test_file_is_not_a_pickle(tmp_path: Path) -> None:
    path = tmp_path / "forest.skops"
    save_estimator(_fitted_forest(), path)
    assert path.read_bytes()[:2] == b"PK"  # a zip of JSON and arrays, not a pickle stream


def test_saving_refuses_types_outside_the_allowlist(tmp_path: Path) -> None:
    transformer = FunctionTransformer(func=subprocess.getoutput)
    with pytest.raises(UntrustedArtifactError, match="not trusted"):
        save_estimator(transformer, tmp_path / "t.skops")
    assert not (tmp_path / "t.skops").exists()


def test_loading_refuses_types_outside_the_allowlist(tmp_path: Path) -> None:
    path = tmp_path / "tampered.skops"
    sio.dump(FunctionTransformer(func=subprocess.getoutput), path)
    with pytest.raises(UntrustedArtifactError, match=r"subprocess\.getoutput"):
        load_estimator(path)
