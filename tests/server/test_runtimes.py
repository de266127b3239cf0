"""Runtimes: each flavour's runtime answers what MLflow's own pyfunc answers for the same model,
byte for byte once encoded as `mlflow models serve` encodes it, and scores a row the same alone
or in a batch where it says so.

Models are saved with MLflow's own `save_model` of each flavour and loaded back with
`mlflow.pyfunc.load_model`, as the server loads them from the registry.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any

import lightgbm
import mlflow
import numpy as np
import pandas as pd
import pytest
import xgboost
from mlflow.models import infer_signature
from mlflow.pyfunc.scoring_server import predictions_to_json
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import SVC

from registry_scripts.dataset import load_frame
from server.runtimes.selection import select_runtime
from server.runtimes.signature import features_of

# The runtimes hand scikit-learn plain arrays where names do not matter (`server.runtimes.sklearn`).
pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names:UserWarning")

FEATURES, TARGET, CLASS_NAMES = load_frame()
Y = TARGET.to_numpy()
# Three classes for the multiclass models: the target split again by the first feature's median.
Y3 = Y + (FEATURES["feature_1"].to_numpy() > FEATURES["feature_1"].median()).astype(int) * (Y == 1)
TREES = ["sklearn.tree._tree.Tree"]


def _rows() -> np.ndarray:
    """Every training row, plus rows far outside its range, and all-zero and all-negative rows."""
    data = FEATURES.to_numpy(dtype=np.float64)
    extremes = np.vstack([np.zeros(30), -np.ones(30), data[0] * 1e6, data[1] * -1e3, np.full(30, 1e-300)])
    return np.vstack([data, extremes])


ROWS = _rows()


def _mlflow_json(output: Any) -> str:
    out = StringIO()
    predictions_to_json(output, out)
    return out.getvalue()


def _save(save: Callable[..., Any], model: Any, path: Path, **options: Any) -> mlflow.pyfunc.PyFuncModel:
    """Save with the flavour's own `save_model`, load back with MLflow's own loader: the reference
    answers come from MLflow's pyfunc (allowed to unpickle here, whatever an app built earlier in
    this process set)."""
    signature = infer_signature(FEATURES.head(5))
    save(model, str(path), signature=signature, input_example=FEATURES.head(5), **options)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
        return mlflow.pyfunc.load_model(str(path))


def _sklearn(estimator: Any, target: np.ndarray = Y, **options: Any) -> Callable[[Path], Any]:
    def make(path: Path) -> mlflow.pyfunc.PyFuncModel:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator.fit(FEATURES, target)
        return _save(mlflow.sklearn.save_model, estimator, path, skops_trusted_types=TREES, **options)

    return make


def _xgb_booster(objective: str, target: np.ndarray, **params: Any) -> Callable[[Path], Any]:
    def make(path: Path) -> mlflow.pyfunc.PyFuncModel:
        train = xgboost.DMatrix(FEATURES, target)
        booster = xgboost.train({"objective": objective, "max_depth": 3, **params}, train, 30)
        return _save(mlflow.xgboost.save_model, booster, path)

    return make


def _xgb_classifier(target: np.ndarray, **options: Any) -> Callable[[Path], Any]:
    def make(path: Path) -> mlflow.pyfunc.PyFuncModel:
        model = xgboost.XGBClassifier(n_estimators=30, max_depth=3, **options).fit(FEATURES, target)
        return _save(mlflow.xgboost.save_model, model, path)

    return make


def _xgb_stopped_early(classifier: bool) -> Callable[[Path], Any]:
    """Trained with early stopping on a validation set: `best_iteration` is set. MLflow's call on a
    native booster uses every tree; `XGBClassifier.predict` stops at the best iteration."""

    def make(path: Path) -> mlflow.pyfunc.PyFuncModel:
        train, valid = slice(0, 400), slice(400, None)
        if classifier:
            model = xgboost.XGBClassifier(n_estimators=60, max_depth=3, early_stopping_rounds=3)
            model.fit(FEATURES[train], Y[train], eval_set=[(FEATURES[valid], Y[valid])], verbose=False)
        else:
            model = xgboost.train(
                {"objective": "binary:logistic", "max_depth": 3},
                xgboost.DMatrix(FEATURES[train], Y[train]),
                60,
                evals=[(xgboost.DMatrix(FEATURES[valid], Y[valid]), "valid")],
                early_stopping_rounds=3,
                verbose_eval=False,
            )
        assert model.best_iteration < 59
        return _save(mlflow.xgboost.save_model, model, path)

    return make


def _lgb_booster(objective: str, target: np.ndarray, **params: Any) -> Callable[[Path], Any]:
    def make(path: Path) -> mlflow.pyfunc.PyFuncModel:
        train = lightgbm.Dataset(FEATURES, target)
        booster = lightgbm.train({"objective": objective, "verbose": -1, **params}, train, 30)
        return _save(mlflow.lightgbm.save_model, booster, path)

    return make


def _lgb_classifier(target: np.ndarray) -> Callable[[Path], Any]:
    def make(path: Path) -> mlflow.pyfunc.PyFuncModel:
        model = lightgbm.LGBMClassifier(n_estimators=30, verbose=-1).fit(FEATURES, target)
        return _save(mlflow.lightgbm.save_model, model, path)

    return make


def _searched(path: Path) -> mlflow.pyfunc.PyFuncModel:
    """A grid search over a pipeline that selects columns by name, pickled as autolog logs a search."""
    pipeline = Pipeline([("columns", _by_name(FEATURES)), ("lr", LogisticRegression(max_iter=5000))])
    search = GridSearchCV(pipeline, {"lr__C": [0.5, 1.0]}, cv=2).fit(FEATURES, Y)
    return _save(mlflow.sklearn.save_model, search, path, serialization_format="cloudpickle")


def _by_name(frame: pd.DataFrame) -> ColumnTransformer:
    """Scales half the columns, chosen by name: a step that needs a frame."""
    return ColumnTransformer(
        [("scaled", StandardScaler(), list(frame.columns[:15]))], remainder="passthrough"
    )


# name -> (model maker, runtime expected, row-invariant expected)
NATIVE: dict[str, tuple[Callable[[Path], Any], str, bool]] = {
    "sklearn logistic pipeline": (
        _sklearn(Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression(max_iter=5000))])),
        "sklearn",
        True,
    ),
    "sklearn min-max logistic pipeline": (
        _sklearn(Pipeline([("scale", MinMaxScaler()), ("lr", LogisticRegression(max_iter=5000))])),
        "sklearn",
        False,
    ),
    "sklearn random forest": (
        _sklearn(RandomForestClassifier(n_estimators=20, random_state=0)),
        "sklearn",
        True,
    ),
    "sklearn gradient boosting": (_sklearn(GradientBoostingClassifier(n_estimators=20)), "sklearn", True),
    "sklearn column transformer": (
        _sklearn(Pipeline([("columns", _by_name(FEATURES)), ("lr", LogisticRegression(max_iter=5000))])),
        "sklearn",
        False,
    ),
    "sklearn svc": (
        _sklearn(Pipeline([("s", StandardScaler()), ("svc", SVC(probability=True))])),
        "sklearn",
        False,
    ),
    "sklearn predict_proba": (
        _sklearn(RandomForestClassifier(n_estimators=10, random_state=0), pyfunc_predict_fn="predict_proba"),
        "sklearn",
        True,
    ),
    "sklearn string classes": (
        _sklearn(RandomForestClassifier(n_estimators=10, random_state=0), np.asarray(CLASS_NAMES)[Y]),
        "sklearn",
        True,
    ),
    "sklearn three classes": (
        _sklearn(RandomForestClassifier(n_estimators=10, random_state=0), Y3),
        "sklearn",
        True,
    ),
    "xgboost classifier": (_xgb_classifier(Y), "xgboost", True),
    "xgboost classifier stopped early": (_xgb_stopped_early(classifier=True), "xgboost", True),
    "xgboost classifier with missing=0": (_xgb_classifier(Y, missing=0.0), "xgboost", True),
    "xgboost booster stopped early": (_xgb_stopped_early(classifier=False), "xgboost", True),
    "xgboost softprob booster of two classes": (
        _xgb_booster("multi:softprob", Y, num_class=2),
        "xgboost",
        True,
    ),
    "lightgbm multiclass booster of two classes": (
        _lgb_booster("multiclass", Y, num_class=2),
        "lightgbm",
        True,
    ),
    "sklearn grid search over named columns": (_searched, "sklearn", False),
    "xgboost classifier three classes": (_xgb_classifier(Y3), "xgboost", True),
    "xgboost binary booster": (_xgb_booster("binary:logistic", Y), "xgboost", True),
    "xgboost softprob booster": (_xgb_booster("multi:softprob", Y3, num_class=3), "xgboost", True),
    "lightgbm classifier": (_lgb_classifier(Y), "lightgbm", True),
    "lightgbm classifier three classes": (_lgb_classifier(Y3), "lightgbm", True),
    "lightgbm binary booster": (_lgb_booster("binary", Y), "lightgbm", True),
    "lightgbm multiclass booster": (_lgb_booster("multiclass", Y3, num_class=3), "lightgbm", True),
}

# Those whose runtime says a row scores the same in any batch (the batcher may merge them).
ROW_INVARIANT = sorted(name for name, (_, _, invariant) in NATIVE.items() if invariant)

GENERIC: dict[str, Callable[[Path], Any]] = {
    "sklearn regressor": _sklearn(LinearRegression()),
    "xgboost softmax booster (class indices)": _xgb_booster("multi:softmax", Y3, num_class=3),
    "xgboost margin booster": _xgb_booster("binary:logitraw", Y),
    "lightgbm regression booster": _lgb_booster("regression", Y.astype(float)),
    "sklearn fitted on the columns in another order": lambda path: _save(
        mlflow.sklearn.save_model,
        RandomForestClassifier(n_estimators=5, random_state=0).fit(FEATURES[FEATURES.columns[::-1]], Y),
        path,
        skops_trusted_types=TREES,
    ),
    "sklearn multi-output classifier": lambda path: _save(
        mlflow.sklearn.save_model,
        RandomForestClassifier(n_estimators=5, random_state=0).fit(FEATURES, np.column_stack([Y, Y3])),
        path,
        skops_trusted_types=TREES,
    ),
}


@pytest.fixture(scope="module", params=sorted(NATIVE))
def native(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    make, runtime_name, row_invariant = NATIVE[request.param]
    pyfunc = make(tmp_path_factory.mktemp("model"))
    runtime = select_runtime(pyfunc, features_of(pyfunc))
    return pyfunc, runtime, runtime_name, row_invariant


def test_each_classifier_flavour_gets_its_runtime(native) -> None:
    _, runtime, runtime_name, row_invariant = native
    assert runtime is not None
    assert runtime.name == runtime_name
    assert runtime.row_invariant is row_invariant


def test_invocations_output_is_mlflows_byte_for_byte(native) -> None:
    pyfunc, runtime, _, _ = native
    expected = _mlflow_json(pyfunc.predict(pd.DataFrame(ROWS, columns=FEATURES.columns)))
    assert _mlflow_json(runtime.mlflow_output(runtime.score(ROWS))) == expected


@pytest.mark.parametrize("native", ROW_INVARIANT, indirect=True)
def test_rows_score_alone_as_in_a_batch_when_row_invariant(native) -> None:
    _, runtime, _, _ = native
    together = runtime.score(ROWS)
    alone = [runtime.score(ROWS[i : i + 1]) for i in range(0, len(ROWS), 7)]
    np.testing.assert_array_equal(
        np.concatenate([p.probabilities for p in alone]), together.probabilities[::7]
    )
    np.testing.assert_array_equal(np.concatenate([p.classes for p in alone]), together.classes[::7])


def test_probabilities_are_per_class_and_sum_to_one(native) -> None:
    _, runtime, _, _ = native
    prediction = runtime.score(ROWS[:50])
    assert prediction.probabilities.shape == (50, len(runtime.classes))
    np.testing.assert_allclose(prediction.probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert set(prediction.labels.tolist()) <= set(runtime.class_names)


@pytest.mark.parametrize("name", sorted(GENERIC))
def test_models_no_runtime_can_score_take_mlflows_generic_path(name: str, tmp_path: Path) -> None:
    pyfunc = GENERIC[name](tmp_path)
    assert select_runtime(pyfunc, features_of(pyfunc)) is None


def test_class_names_come_from_the_models_metadata(tmp_path: Path) -> None:
    estimator = RandomForestClassifier(n_estimators=5, random_state=0).fit(FEATURES, Y)
    pyfunc = _save(
        mlflow.sklearn.save_model,
        estimator,
        tmp_path / "m",
        skops_trusted_types=TREES,
        metadata={"class_names": list(CLASS_NAMES)},
    )
    runtime = select_runtime(pyfunc, features_of(pyfunc))
    assert runtime is not None
    assert runtime.class_names == CLASS_NAMES


def test_without_metadata_class_names_are_the_class_values(tmp_path: Path) -> None:
    pyfunc = _xgb_classifier(Y)(tmp_path / "m")
    runtime = select_runtime(pyfunc, features_of(pyfunc))
    assert runtime is not None
    assert runtime.class_names == ("0", "1")


def test_a_value_a_scaler_overflows_is_refused_as_scikit_learn_refuses_it(tmp_path: Path) -> None:
    """1e308 is a finite double, but scaled it is not: scikit-learn's pipeline raises, so MLflow
    answers an error; the linear kernel standing in for the pipeline raises too."""
    make = NATIVE["sklearn logistic pipeline"][0]
    pyfunc = make(tmp_path / "m")
    runtime = select_runtime(pyfunc, features_of(pyfunc))
    assert runtime is not None
    rows = np.full((1, 30), 1e308)
    with pytest.raises(ValueError, match="infinity"):
        pyfunc.predict(pd.DataFrame(rows, columns=FEATURES.columns))
    with pytest.raises(ValueError, match="infinity"):
        runtime.score(rows)
