"""Registering versions in the test registry, in process: ours, a 29-feature one, a broken one, and
one of each MLflow flavour `registry_scripts.train` offers (sklearn, xgboost, lightgbm).

None of ours is pickled but the one `register_pickled` makes, so the others load under the default
ALLOW_PICKLED_MODELS=false. The MLflow flavours differ: MLflow 3.17 itself loads an `mlflow.sklearn`
model (skops or autologging's cloudpickle) and a lightgbm `LGBMClassifier` (skops) only while
`MLFLOW_ALLOW_PICKLE_DESERIALIZATION` is true; the server loads the skops ones with its own
allowlist either way (`server.live.mlflow_models`), autolog's pickles only when allowed. xgboost
models and native lightgbm Boosters are stored in their library's own format and load either way."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models.signature import infer_signature
from sklearn.datasets import make_classification

from model_wrapper import contract, log_classifier
from registry_scripts.dataset import Dataset, load_dataset, load_frame
from registry_scripts.estimators import build_estimator
from registry_scripts.flavors import FLAVORS
from registry_scripts.train import register_version

FEATURES, TARGET, CLASS_NAMES = load_frame()
BROKEN_MODEL_CODE = Path(__file__).parent / "fixtures" / "broken_model.py"
NARROW_MODEL_CODE = Path(__file__).parent / "fixtures" / "narrow_model.py"
MULTICLASS_NAMES = ("class_a", "class_b", "class_c")
PICKLE_SETTING = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"


def register_ours(name: str, model_type: str = "logistic_regression", seed: int = 0) -> str:
    """A version of the wrapper model (the kind `registry_scripts.train` makes)."""
    estimator = build_estimator(model_type, seed).fit(FEATURES.to_numpy(), TARGET.to_numpy())
    with mlflow.start_run():
        info = log_classifier(
            estimator, class_names=CLASS_NAMES, input_example=FEATURES.head(3), registered_model_name=name
        )
    return str(info.registered_model_version)


def register_flavor(
    name: str, flavor: str, estimator: str | None = None, *, autolog: bool = False, seed: int = 0
) -> str:
    """A version exactly as `registry_scripts.train --flavor flavor [--estimator …] [--autolog]
    --seed seed` logs it (the flavour's default estimator when none is named)."""
    chosen = estimator or FLAVORS[flavor].default_estimator
    return register_version(load_dataset(seed=seed), name, flavor, chosen, seed, autolog=autolog)


def multiclass_dataset(seed: int = 0) -> Dataset:
    """Three separable classes over the same 30 double feature columns, split like the real data."""
    x, y = make_classification(
        n_samples=300, n_features=contract.FEATURE_COUNT, n_informative=8, n_classes=3, random_state=seed
    )
    features = pd.DataFrame(x, columns=list(contract.FEATURE_NAMES))
    target = pd.Series(y, name="target")
    split = len(features) * 4 // 5
    return Dataset(
        features.iloc[:split],
        features.iloc[split:],
        target.iloc[:split],
        target.iloc[split:],
        MULTICLASS_NAMES,
    )


def register_multiclass_booster(name: str, flavor: str, seed: int = 0) -> str:
    """A native three-class Booster (`multi:softprob` for xgboost, `multiclass` for lightgbm) that
    answers one probability column per class, logged as `train --estimator booster` logs one."""
    if flavor not in ("xgboost", "lightgbm"):
        raise ValueError(f"no native booster in the {flavor} flavour")
    return register_version(multiclass_dataset(seed), name, flavor, "booster", seed)


def register_29_features(name: str) -> str:
    """A version (logged as code) whose signature lacks feature_30."""
    features = FEATURES.drop(columns=["feature_30"])
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(NARROW_MODEL_CODE),
            signature=infer_signature(features, pd.DataFrame({"prediction": [0] * len(features)})),
            input_example=features.head(3),
            registered_model_name=name,
        )
    return str(info.registered_model_version)


def register_broken(name: str) -> str:
    """A version with the served signature that fails on its own input example."""
    return _register_with_served_signature(name, str(BROKEN_MODEL_CODE))


def register_pickled(name: str, marker: Path) -> str:
    """A cloudpickled pyfunc version (MLflow's default for a `PythonModel` instance) that touches
    `marker` when unpickled, with the served signature."""
    from tests.fixtures.pickled_model import MarksItsUnpickling

    # MLflow unpickles the model once while logging it (its input-example check), and only when
    # allowed: an in-process app built earlier in this test process may have turned that off.
    allowed = os.environ.get(PICKLE_SETTING)
    os.environ[PICKLE_SETTING] = "true"
    try:
        return _register_with_served_signature(name, MarksItsUnpickling(marker))
    finally:
        if allowed is None:
            del os.environ[PICKLE_SETTING]
        else:
            os.environ[PICKLE_SETTING] = allowed


def _register_with_served_signature(name: str, python_model: object) -> str:
    """`python_model` (a models-from-code path, or an instance MLflow pickles) logged with the
    served signature and a zero-row input example."""
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=python_model,
            signature=contract.signature(CLASS_NAMES),
            input_example=pd.DataFrame(
                np.zeros((1, contract.FEATURE_COUNT)), columns=list(contract.FEATURE_NAMES)
            ),
            registered_model_name=name,
        )
    return str(info.registered_model_version)


def champion_model(client: MlflowClient, prefix: str) -> str:
    """A registered model of the calling test's own, named `prefix-…`, with version 1 (ours) on
    @champion: alias moves in one test never reach another."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    register_ours(name)
    client.set_registered_model_alias(name, "champion", "1")
    return name


def register_mismatched(name: str, flavor: str) -> str:
    """A version of `flavor` with the served signature whose model was fitted on 20 features only,
    so it fails on its own input example: broken the way a mislabelled artifact is."""
    narrow = FEATURES.iloc[:, :20]
    target = TARGET.to_numpy()
    example = FEATURES.head(3)
    signature = mlflow.models.ModelSignature(inputs=contract.input_schema())
    with mlflow.start_run():
        if flavor == "sklearn":
            from sklearn.ensemble import RandomForestClassifier

            model = RandomForestClassifier(n_estimators=5, random_state=0).fit(narrow.to_numpy(), target)
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=signature,
                input_example=example,
                skops_trusted_types=["sklearn.tree._tree.Tree"],
                registered_model_name=name,
            )
        elif flavor == "xgboost":
            import xgboost

            booster = xgboost.train(
                {"objective": "binary:logistic"}, xgboost.DMatrix(narrow.to_numpy(), target), 5
            )
            info = mlflow.xgboost.log_model(
                booster, name="model", signature=signature, input_example=example, registered_model_name=name
            )
        elif flavor == "lightgbm":
            import lightgbm

            data = lightgbm.Dataset(narrow.to_numpy(), target)
            booster = lightgbm.train({"objective": "binary", "verbose": -1}, data, 5)
            info = mlflow.lightgbm.log_model(
                booster, name="model", signature=signature, input_example=example, registered_model_name=name
            )
        else:
            raise ValueError(f"no mismatched model of the {flavor} flavour")
    return str(info.registered_model_version)
