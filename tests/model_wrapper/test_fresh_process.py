"""`models:/…@champion` loads in a brand-new process, from the registry, and predicts the same."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
from mlflow.pyfunc import PyFuncModel

LOAD_AND_PREDICT = """
import json, sys
import mlflow
from registry_scripts.dataset import load_frame
model = mlflow.pyfunc.load_model(sys.argv[1])
print(json.dumps(model.predict(load_frame()[0]).to_dict(orient="list")))
"""


def test_champion_predicts_the_same_in_a_fresh_process(
    champion_uri: str, base_env: dict[str, str], pyfunc_model: PyFuncModel, features: pd.DataFrame
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, champion_uri],
        env=base_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    fresh = pd.DataFrame(json.loads(result.stdout.strip().splitlines()[-1]))
    expected = pyfunc_model.predict(features)
    np.testing.assert_array_equal(fresh["prediction"], expected["prediction"])
    np.testing.assert_array_equal(fresh["label"], expected["label"])
    np.testing.assert_allclose(
        fresh["probability_benign"], expected["probability_benign"], rtol=0, atol=1e-15
    )
