"""The wrapper answers exactly what its estimator answers, through both entry points."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel

from model_wrapper import FEATURE_NAMES, SklearnClassifierModel, output_columns


def test_output_columns_are_the_documented_contract(
    pyfunc_model: PyFuncModel, features: pd.DataFrame
) -> None:
    result = pyfunc_model.predict(features.head(2))
    assert list(result.columns) == [
        "prediction",
        "label",
        "probability_malignant",
        "probability_benign",
    ]
    assert list(result.columns) == output_columns(("malignant", "benign"))


def test_predict_equals_the_estimator_on_the_whole_dataset(
    pyfunc_model: PyFuncModel, features: pd.DataFrame
) -> None:
    wrapper = pyfunc_model.unwrap_python_model()
    array = features.to_numpy(dtype=np.float64)
    result = pyfunc_model.predict(features)
    np.testing.assert_array_equal(result["prediction"].to_numpy(), wrapper.estimator.predict(array))
    # Equal to the estimator up to the summation order of its BLAS product: an ulp or two of 1.0
    # (see model_wrapper.kernels).
    probabilities = wrapper.estimator.predict_proba(array)
    np.testing.assert_allclose(
        result["probability_malignant"].to_numpy(), probabilities[:, 0], rtol=1e-12, atol=1e-15
    )
    np.testing.assert_allclose(
        result["probability_benign"].to_numpy(), probabilities[:, 1], rtol=1e-12, atol=1e-15
    )
    names = np.where(result["prediction"] == 0, "malignant", "benign")
    np.testing.assert_array_equal(result["label"].to_numpy(), names)


def test_numpy_entry_point_equals_pyfunc_predict(pyfunc_model: PyFuncModel, features: pd.DataFrame) -> None:
    wrapper = pyfunc_model.unwrap_python_model()
    assert isinstance(wrapper, SklearnClassifierModel)
    fast = wrapper.predict_array(features.loc[:, list(FEATURE_NAMES)].to_numpy(dtype=np.float64))
    slow = pyfunc_model.predict(features)
    np.testing.assert_array_equal(fast.classes, slow["prediction"].to_numpy())
    np.testing.assert_array_equal(fast.labels, slow["label"].to_numpy())
    np.testing.assert_array_equal(fast.probabilities[:, 0], slow["probability_malignant"].to_numpy())
    np.testing.assert_array_equal(fast.probabilities[:, 1], slow["probability_benign"].to_numpy())


def test_description_carries_classes_names_and_features(pyfunc_model: PyFuncModel) -> None:
    description = pyfunc_model.unwrap_python_model().description
    assert description.classes == (0, 1)
    assert description.class_names == ("malignant", "benign")
    assert description.feature_names == FEATURE_NAMES
    assert description.estimator == "sklearn.pipeline.Pipeline"


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_value_is_refused_with_the_feature_and_row(
    pyfunc_model: PyFuncModel, features: pd.DataFrame, value: float
) -> None:
    rows = features.head(3).copy()
    rows.loc[rows.index[2], "feature_7"] = value
    with pytest.raises(MlflowException, match=r"feature 'feature_7' must be a finite number \(row 2\)"):
        pyfunc_model.predict(rows)
