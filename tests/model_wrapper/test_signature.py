"""The logged signature: 30 required doubles in, the documented columns out, enforced by MLflow."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel

from model_wrapper import FEATURE_NAMES


def test_input_schema_is_exactly_thirty_required_doubles(pyfunc_model: PyFuncModel) -> None:
    schema = pyfunc_model.metadata.get_input_schema()
    assert schema.input_names() == [f"feature_{i}" for i in range(1, 31)]
    assert {spec.type.name for spec in schema.inputs} == {"double"}
    assert all(spec.required for spec in schema.inputs)


def test_output_schema_names_each_column(pyfunc_model: PyFuncModel) -> None:
    schema = pyfunc_model.metadata.get_output_schema()
    assert [(s.name, s.type.name) for s in schema.inputs] == [
        ("prediction", "long"),
        ("label", "string"),
        ("probability_malignant", "double"),
        ("probability_benign", "double"),
    ]


def test_input_example_is_logged_with_the_model(pyfunc_model: PyFuncModel) -> None:
    example = pyfunc_model.input_example
    assert isinstance(example, pd.DataFrame)
    assert list(example.columns) == list(FEATURE_NAMES)
    assert len(pyfunc_model.predict(example)) == len(example)


def test_signature_rejects_29_columns(pyfunc_model: PyFuncModel, features: pd.DataFrame) -> None:
    with pytest.raises(MlflowException, match="feature_30"):
        pyfunc_model.predict(features.head(2).drop(columns=["feature_30"]))


def test_signature_rejects_non_numeric_values(pyfunc_model: PyFuncModel, features: pd.DataFrame) -> None:
    rows = features.head(2).astype({"feature_4": object})
    rows["feature_4"] = ["abc", "1.5"]
    with pytest.raises(MlflowException, match="Failed to enforce schema"):
        pyfunc_model.predict(rows)


def test_mlflow_drops_an_extra_column_before_the_model_sees_it(
    pyfunc_model: PyFuncModel, features: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    """No pyfunc signature can refuse an undeclared column: MLflow's schema enforcement removes it
    (with a warning) before `predict` runs. The server's strict routes refuse one; `/invocations`
    keeps MLflow's behaviour because it promises MLflow's answers."""
    rows = features.head(2).assign(extra=1.0)
    result = pyfunc_model.predict(rows)
    pd.testing.assert_frame_equal(result, pyfunc_model.predict(features.head(2)))
    assert "extra" in caplog.text
