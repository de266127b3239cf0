"""Resolving registry URIs and retrying the first load with backoff."""

from __future__ import annotations

import operator
from pathlib import Path

import joblib
import lightgbm
import mlflow
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from model_wrapper.estimator_io import TRUSTED_TYPES, UntrustedArtifactError
from registry_scripts.dataset import load_frame
from registry_scripts.estimators import build_estimator
from registry_scripts.tracking_server import TrackingServer
from server.live.loaded_model import LoadedModel
from server.live.loading import AliasNotSet, ModelLoader, ModelLoadError, load_with_retry
from server.live.mlflow_models import load_pyfunc


def test_alias_resolves_to_a_pinned_version(tracking_server: TrackingServer, champion_version: str) -> None:
    source = ModelLoader(tracking_server.url).resolve("models:/breast-cancer-classifier@champion")
    assert (source.name, source.alias, source.version) == (
        "breast-cancer-classifier",
        "champion",
        champion_version,
    )
    assert source.download_uri.startswith("mlflow-artifacts:/")
    assert set(source.metrics) == {"accuracy", "f1", "precision", "recall", "roc_auc"}


def test_version_and_latest_resolve(
    tracking_server: TrackingServer, champion_version: str, client_mlflow: MlflowClient
) -> None:
    loader = ModelLoader(tracking_server.url)
    assert loader.resolve(f"models:/breast-cancer-classifier/{champion_version}").version == champion_version
    newest = max(
        int(v.version) for v in client_mlflow.search_model_versions("name = 'breast-cancer-classifier'")
    )
    assert loader.resolve("models:/breast-cancer-classifier/latest").version == str(newest)


def test_unknown_alias_is_an_error(tracking_server: TrackingServer, champion_version: str) -> None:
    with pytest.raises(
        AliasNotSet, match=r"^the alias breast-cancer-classifier@nope is not set in the registry$"
    ):
        ModelLoader(tracking_server.url).resolve("models:/breast-cancer-classifier@nope")


def test_loaded_registry_model_is_scored_by_the_wrapper_runtime(loaded_champion: LoadedModel) -> None:
    assert loaded_champion.runtime_name == "wrapper"
    assert loaded_champion.runtime is not None
    assert loaded_champion.runtime.row_invariant
    assert loaded_champion.feature_names == tuple(f"feature_{i}" for i in range(1, 31))
    assert loaded_champion.example is not None


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_retry_backs_off_until_the_load_succeeds(loaded_champion: LoadedModel) -> None:
    clock = FakeClock()
    failures = iter([ConnectionError("refused")] * 5)

    def load() -> LoadedModel:
        error = next(failures, None)
        if error is not None:
            raise error
        return loaded_champion

    assert load_with_retry(load, 60, sleep=clock.sleep, clock=clock) is loaded_champion
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 5.0]


def test_retry_gives_up_at_the_deadline_with_the_last_reason() -> None:
    clock = FakeClock()

    def load() -> LoadedModel:
        raise ConnectionError("connection refused\nsecond line")

    with pytest.raises(ModelLoadError) as raised:
        load_with_retry(load, 10, sleep=clock.sleep, clock=clock)
    assert str(raised.value) == "could not load the model after 5 attempt(s): connection refused"
    assert sum(clock.sleeps) <= 10


def test_zero_timeout_tries_once() -> None:
    clock = FakeClock()
    with pytest.raises(ModelLoadError, match="after 1 attempt"):
        load_with_retry(lambda: (_ for _ in ()).throw(OSError("down")), 0, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == []


@pytest.mark.parametrize("suffix", [".joblib", ".skops"])
def test_local_estimator_file_is_served_through_the_wrapper(tmp_path: Path, suffix: str) -> None:
    features, target, _ = load_frame()
    estimator = build_estimator("logistic_regression", 0).fit(features.to_numpy(), target.to_numpy())
    path = tmp_path / f"model{suffix}"
    joblib.dump(estimator, path) if suffix == ".joblib" else sio.dump(estimator, path)
    model = ModelLoader(None, work_dir=tmp_path).load_local_estimator(path, allow_pickle=suffix == ".joblib")
    assert model.runtime is not None
    assert model.runtime_name == "wrapper"
    assert model.runtime.class_names == ("malignant", "benign")
    prediction = model.runtime.score(features.to_numpy()[:5])
    np.testing.assert_array_equal(prediction.classes, estimator.predict(features.to_numpy()[:5]))


def test_missing_local_file_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        ModelLoader(None).load_local_estimator(tmp_path / "absent.joblib")


def test_a_joblib_file_is_refused_unless_pickles_are_allowed(tmp_path: Path) -> None:
    """joblib unpickles, and unpickling runs code: a marker file shows that nothing ran."""
    marker = tmp_path / "unpickled"
    path = tmp_path / "model.joblib"
    joblib.dump(TouchesOnUnpickle(marker), path)
    with pytest.raises(ModelLoadError, match=r"is not a \.skops file: loading it would unpickle it"):
        ModelLoader(None, work_dir=tmp_path).load_local_estimator(path)
    assert not marker.exists()


class TouchesOnUnpickle:
    """An object whose unpickling has a visible side effect."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def test_serving_a_local_file_never_touches_a_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API image has mlflow-skinny, whose default store (a SQLite file) it cannot open."""
    features, target, _ = load_frame()
    path = tmp_path / "model.skops"
    sio.dump(build_estimator("logistic_regression", 0).fit(features.to_numpy(), target.to_numpy()), path)
    monkeypatch.chdir(tmp_path)
    loader = ModelLoader(None, work_dir=tmp_path)
    loader.load_local_estimator(path)
    assert "client" not in vars(loader)
    assert not (tmp_path / "mlflow.db").exists()


def _sklearn_model_dir(tmp_path: Path, estimator, **options) -> str:
    features, target, _ = load_frame()
    estimator.fit(features, target)
    path = str(tmp_path / "model")
    mlflow.sklearn.save_model(estimator, path, input_example=features.head(3), **options)
    return path


def test_an_skops_sklearn_model_loads_with_the_servers_allowlist_while_unpickling_is_off(
    tmp_path: Path, monkeypatch
) -> None:
    """MLflow refuses every `mlflow.sklearn` model while MLFLOW_ALLOW_PICKLE_DESERIALIZATION is
    false (ALLOW_PICKLED_MODELS=false sets it so); the server loads an skops one itself."""
    path = _sklearn_model_dir(
        tmp_path,
        RandomForestClassifier(n_estimators=5, random_state=0),
        skops_trusted_types=list(TRUSTED_TYPES),
    )
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    with pytest.raises(MlflowException, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION"):
        mlflow.pyfunc.load_model(path)
    pyfunc = load_pyfunc(path)
    features = load_frame()[0]
    assert (
        pyfunc.predict(features.head(5)).tolist() == pyfunc.get_raw_model().predict(features.head(5)).tolist()
    )
    assert isinstance(pyfunc.input_example, pd.DataFrame)


def test_an_skops_sklearn_model_whose_own_list_trusts_a_callable_is_refused(
    tmp_path: Path, monkeypatch
) -> None:
    """The model's MLmodel file may list any type as trusted (MLflow would load it, with the flag
    on); the server's allowlist does not take that list's word."""
    estimator = Pipeline(
        [("negate", FunctionTransformer(operator.neg)), ("lr", LogisticRegression(max_iter=5000))]
    )
    path = _sklearn_model_dir(tmp_path, estimator, skops_trusted_types=["_operator.neg"])
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    with pytest.raises(UntrustedArtifactError, match=r"_operator\.neg"):
        load_pyfunc(path)


def test_an_skops_lgbm_classifier_loads_with_the_servers_allowlist_while_unpickling_is_off(
    tmp_path: Path, monkeypatch
) -> None:
    features, target, _ = load_frame()
    model = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(features, target)
    path = str(tmp_path / "model")
    mlflow.lightgbm.save_model(model, path, input_example=features.head(3))
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    with pytest.raises(MlflowException, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION"):
        mlflow.pyfunc.load_model(path)
    pyfunc = load_pyfunc(path)
    assert pyfunc.predict(features.head(5)).tolist() == model.predict(features.head(5)).tolist()
