"""`mlflow.lightgbm`: an `LGBMClassifier`, or a native `Booster` from `lightgbm.train`.

A native Booster is stored in LightGBM's own text format, which MLflow loads without unpickling;
an `LGBMClassifier` goes through MLflow's scikit-learn path (skops), so MLflow's own loader needs
`MLFLOW_ALLOW_PICKLE_DESERIALIZATION` for it (registry-serve loads it with an allowlist of its own).
lightgbm is imported when this flavour is chosen.
"""

from __future__ import annotations

from typing import Any

from registry_scripts.dataset import Dataset
from registry_scripts.flavors.common import (
    features,
    input_example,
    log_flavour_model,
    log_held_out_metrics,
    require,
    two_columns,
)

# Small enough that a test trains one in well under a second; verbose=-1 keeps the log quiet.
TREES = 100
LEAVES = 15


def log_classifier(data: Dataset, seed: int) -> str:
    """A `lightgbm.LGBMClassifier` fitted on the feature frame; the logged model's URI."""
    lgb = require("lightgbm", "lightgbm")
    model = lgb.LGBMClassifier(n_estimators=TREES, num_leaves=LEAVES, random_state=seed, n_jobs=1, verbose=-1)
    model.fit(features(data.x_train), data.y_train)
    held_out = features(data.x_test)
    log_held_out_metrics(data, model.predict(held_out), model.predict_proba(held_out))
    return log_flavour_model("lightgbm", model, data, model.predict(input_example(data)), "sklearn", "skops")


def log_booster(data: Dataset, seed: int) -> str:
    """A native `Booster` from `lightgbm.train`: objective `binary` for two classes, `multiclass`
    for more (one probability column per class); the logged model's URI."""
    lgb = require("lightgbm", "lightgbm")
    classes = len(data.class_names)
    params: dict[str, Any] = {"num_leaves": LEAVES, "seed": seed, "num_threads": 1, "verbose": -1}
    if classes == 2:
        params["objective"] = "binary"
    else:
        params |= {"objective": "multiclass", "num_class": classes}
    train = lgb.Dataset(features(data.x_train), label=data.y_train.to_numpy())
    booster = lgb.train(params, train, num_boost_round=TREES)
    scores = booster.predict(features(data.x_test))
    probabilities = two_columns(scores) if classes == 2 else scores
    log_held_out_metrics(data, probabilities.argmax(axis=1), probabilities)
    return log_flavour_model("lightgbm", booster, data, booster.predict(input_example(data)))


def log_lightgbm(data: Dataset, estimator_name: str, seed: int) -> str:
    """Fit and log the named lightgbm estimator (`classifier` or `booster`) in the active run."""
    return {"classifier": log_classifier, "booster": log_booster}[estimator_name](data, seed)
