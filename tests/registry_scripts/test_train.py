"""`registry_scripts.train` against a real tracking server."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import Model

from model_wrapper import contract
from model_wrapper.reference_profile import PROFILE_ARTIFACT, ReferenceProfile
from registry_scripts.flavors.common import INPUT_EXAMPLE_ROWS
from tests.conftest import DEFAULT_MODEL
from tests.helpers import run_module, run_ok
from tests.registry import MULTICLASS_NAMES, register_multiclass_booster

METRICS = {"accuracy", "f1", "precision", "recall", "roc_auc"}
PICKLE_SWITCH = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"


def test_train_registers_a_version_carrying_the_five_metrics(
    model_env: dict[str, str], client_mlflow: MlflowClient
) -> None:
    version = run_ok("registry_scripts.train", env=model_env)
    assert version == "1"
    registered = client_mlflow.get_model_version(model_env["MODEL_NAME"], version)
    metrics = client_mlflow.get_run(registered.run_id).data.metrics
    assert set(metrics) >= METRICS
    assert all(0.9 < metrics[name] <= 1.0 for name in METRICS)
    params = client_mlflow.get_run(registered.run_id).data.params
    assert params["model_type"] == "logistic_regression"
    assert params["seed"] == "42"


def test_the_version_run_carries_the_reference_profile_of_its_training_split(
    champion_version: str, client_mlflow: MlflowClient
) -> None:
    run_id = client_mlflow.get_model_version(DEFAULT_MODEL, champion_version).run_id
    profile = ReferenceProfile.from_dict(mlflow.artifacts.load_dict(f"runs:/{run_id}/{PROFILE_ARTIFACT}"))
    assert profile.feature_names == contract.FEATURE_NAMES
    assert str(profile.rows) == client_mlflow.get_run(run_id).data.params["train_rows"]
    assert [c.label for c in profile.classes] == ["malignant", "benign"]
    assert sum(c.count for c in profile.classes) == profile.rows
    assert all(f.bin_counts.sum() == profile.rows for f in profile.features)


def test_first_version_takes_the_free_alias_and_later_ones_leave_it(
    model_env: dict[str, str], client_mlflow: MlflowClient
) -> None:
    name = model_env["MODEL_NAME"]
    assert run_ok("registry_scripts.train", env=model_env) == "1"
    assert client_mlflow.get_registered_model(name).aliases == {"champion": "1"}
    assert run_ok("registry_scripts.train", "--model-type", "random_forest", env=model_env) == "2"
    assert client_mlflow.get_registered_model(name).aliases == {"champion": "1"}


def test_promote_flag_moves_the_alias_to_the_new_version(
    model_env: dict[str, str], client_mlflow: MlflowClient
) -> None:
    run_ok("registry_scripts.train", env=model_env)
    version = run_ok(
        "registry_scripts.train", "--promote", "--model-type", "gradient_boosting", env=model_env
    )
    assert client_mlflow.get_registered_model(model_env["MODEL_NAME"]).aliases == {"champion": version}
    assert version == "2"


def test_if_no_champion_trains_nothing_when_the_alias_is_set(
    model_env: dict[str, str], client_mlflow: MlflowClient
) -> None:
    run_ok("registry_scripts.train", env=model_env)
    assert run_ok("registry_scripts.train", "--if-no-champion", env=model_env) == "1"
    assert len(client_mlflow.search_model_versions(f"name = '{model_env['MODEL_NAME']}'")) == 1


def test_seed_changes_the_split(model_env: dict[str, str], client_mlflow: MlflowClient) -> None:
    run_ok("registry_scripts.train", "--seed", "7", env=model_env)
    version = client_mlflow.get_model_version(model_env["MODEL_NAME"], "1")
    assert client_mlflow.get_run(version.run_id).data.params["seed"] == "7"


def test_unknown_model_type_is_a_usage_error(model_env: dict[str, str]) -> None:
    result = run_module("registry_scripts.train", "--model-type", "svm", env=model_env)
    assert result.returncode == 2
    assert "invalid choice: 'svm'" in result.stderr


def test_unreachable_tracking_server_fails_with_one_line(model_env: dict[str, str]) -> None:
    env = {**model_env, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    result = run_module("registry_scripts.train", env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "127.0.0.1:9" in errors[0]


# args, the MLflow flavour, its `model_class` (xgboost and lightgbm record one), the file the model
# is stored in, and whether MLflow 3.17 loads it only while its pickle switch is on (every
# `mlflow.sklearn` model, skops included, and an LGBMClassifier, which goes the same way).
FLAVOR_CASES = [
    pytest.param(["--flavor", "sklearn"], "sklearn", None, "model.skops", True, id="sklearn-lr"),
    pytest.param(
        ["--flavor", "sklearn", "--estimator", "random_forest"],
        "sklearn",
        None,
        "model.skops",
        True,
        id="sklearn-rf",
    ),
    pytest.param(
        ["--flavor", "sklearn", "--model-type", "gradient_boosting"],
        "sklearn",
        None,
        "model.skops",
        True,
        id="sklearn-gb",
    ),
    # Autologging writes cloudpickle (its default), so this one really unpickles.
    pytest.param(
        ["--flavor", "sklearn", "--autolog"], "sklearn", None, "model.pkl", True, id="sklearn-autolog"
    ),
    pytest.param(
        ["--flavor", "xgboost"], "xgboost", "xgboost.sklearn.XGBClassifier", "model.ubj", False, id="xgb-clf"
    ),
    pytest.param(
        ["--flavor", "xgboost", "--estimator", "booster"],
        "xgboost",
        "xgboost.core.Booster",
        "model.ubj",
        False,
        id="xgb-booster",
    ),
    pytest.param(
        ["--flavor", "lightgbm"],
        "lightgbm",
        "lightgbm.sklearn.LGBMClassifier",
        "model.skops",
        True,
        id="lgb-clf",
    ),
    pytest.param(
        ["--flavor", "lightgbm", "--estimator", "booster"],
        "lightgbm",
        "lightgbm.basic.Booster",
        "model.lgb",
        False,
        id="lgb-booster",
    ),
]


def _stored_in(model: Model) -> str:
    pyfunc = model.flavors["python_function"]
    return pyfunc.get("model_path") or pyfunc["data"]


@pytest.mark.parametrize(("args", "flavor", "model_class", "stored_in", "gated"), FLAVOR_CASES)
def test_each_flavour_registers_a_version_that_takes_the_30_doubles_and_answers_its_example(
    args: list[str],
    flavor: str,
    model_class: str | None,
    stored_in: str,
    gated: bool,
    model_env: dict[str, str],
    client_mlflow: MlflowClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = model_env["MODEL_NAME"]
    version = run_ok("registry_scripts.train", *args, env=model_env)
    assert version == "1"
    uri = f"models:/{name}/{version}"

    model = Model.load(uri)
    assert set(model.flavors) == {"python_function", flavor}
    assert model.flavors[flavor].get("model_class") == model_class
    assert _stored_in(model) == stored_in
    assert model.signature is not None
    assert model.signature.inputs == contract.input_schema()
    autologged = "--autolog" in args
    assert model.metadata == (None if autologged else {"class_names": ["malignant", "benign"]})

    run = client_mlflow.get_run(client_mlflow.get_model_version(name, version).run_id)
    assert run.data.params["flavor"] == flavor
    assert run.data.params["seed"] == "42"
    assert all(0.9 < run.data.metrics[metric] <= 1.0 for metric in METRICS)

    monkeypatch.setenv(PICKLE_SWITCH, "false")
    if gated:
        with pytest.raises(MlflowException, match=PICKLE_SWITCH):
            mlflow.pyfunc.load_model(uri)
        monkeypatch.setenv(PICKLE_SWITCH, "true")
    loaded = mlflow.pyfunc.load_model(uri)
    example = loaded.input_example
    assert list(example.columns) == list(contract.FEATURE_NAMES)
    assert len(example) == INPUT_EXAMPLE_ROWS
    assert len(loaded.predict(example)) == INPUT_EXAMPLE_ROWS


@pytest.mark.parametrize("flavor", ["xgboost", "lightgbm"])
def test_multiclass_booster_helper_answers_a_probability_per_class(
    flavor: str, client_mlflow: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"multiclass-{uuid.uuid4().hex[:8]}"
    version = register_multiclass_booster(name, flavor)
    uri = f"models:/{name}/{version}"
    model = Model.load(uri)
    assert (
        model.flavors[flavor]["model_class"]
        == f"{flavor}.{'core' if flavor == 'xgboost' else 'basic'}.Booster"
    )
    assert model.signature is not None
    assert model.signature.inputs == contract.input_schema()
    assert model.metadata == {"class_names": list(MULTICLASS_NAMES)}
    monkeypatch.setenv(PICKLE_SWITCH, "false")
    loaded = mlflow.pyfunc.load_model(uri)
    probabilities = loaded.predict(loaded.input_example)
    assert probabilities.shape == (INPUT_EXAMPLE_ROWS, len(MULTICLASS_NAMES))
    assert abs(probabilities.sum(axis=1) - 1).max() < 1e-5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--flavor", "xgboost", "--model-type", "random_forest"],
            "--model-type: not for the xgboost flavour",
        ),
        (["--flavor", "lightgbm", "--estimator", "random_forest"], "invalid choice: 'random_forest'"),
        (["--estimator", "booster"], "invalid choice: 'booster'"),
        (["--flavor", "xgboost", "--autolog"], "--autolog: not for the xgboost flavour"),
        (["--estimator", "random_forest", "--model-type", "gradient_boosting"], "names another estimator"),
    ],
)
def test_estimators_of_another_flavour_are_usage_errors(
    args: list[str], message: str, model_env: dict[str, str]
) -> None:
    result = run_module("registry_scripts.train", *args, env=model_env)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize("extra", ["xgboost", "lightgbm"])
def test_a_missing_extra_is_named_on_one_line(extra: str, model_env: dict[str, str], tmp_path: Path) -> None:
    # A module of that name that fails to import stands in for the extra not being installed.
    (tmp_path / f"{extra}.py").write_text("raise ImportError('not installed here')\n")
    path = [str(tmp_path), *filter(None, [model_env.get("PYTHONPATH")])]
    env = {**model_env, "PYTHONPATH": os.pathsep.join(path)}
    result = run_module("registry_scripts.train", "--flavor", extra, env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {extra} is not installed: pip install 'registry-serve[{extra}]'"]
