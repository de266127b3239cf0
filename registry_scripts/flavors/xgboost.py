"""`mlflow.xgboost`: an `XGBClassifier`, or a native `Booster` from `xgboost.train`.

Both are stored in XGBoost's own format (UBJSON), which MLflow loads without unpickling anything.
xgboost is imported when this flavour is chosen, so the other flavours run without the extra.
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

# Small enough that a test trains one in well under a second.
TREES = 100
MAX_DEPTH = 4


def log_classifier(data: Dataset, seed: int) -> str:
    """An `xgboost.XGBClassifier` fitted on the feature frame; the logged model's URI."""
    xgb = require("xgboost", "xgboost")
    model = xgb.XGBClassifier(n_estimators=TREES, max_depth=MAX_DEPTH, random_state=seed, n_jobs=1)
    model.fit(features(data.x_train), data.y_train)
    held_out = features(data.x_test)
    log_held_out_metrics(data, model.predict(held_out), model.predict_proba(held_out))
    return log_flavour_model("xgboost", model, data, model.predict(input_example(data)), "sklearn")


def log_booster(data: Dataset, seed: int) -> str:
    """A native `Booster` from `xgboost.train`: `binary:logistic` for two classes, `multi:softprob`
    for more (one probability column per class); the logged model's URI."""
    xgb = require("xgboost", "xgboost")
    classes = len(data.class_names)
    params: dict[str, Any] = {"max_depth": MAX_DEPTH, "seed": seed, "nthread": 1}
    if classes == 2:
        params["objective"] = "binary:logistic"
    else:
        params |= {"objective": "multi:softprob", "num_class": classes}
    train = xgb.DMatrix(features(data.x_train), label=data.y_train.to_numpy())
    booster = xgb.train(params, train, num_boost_round=TREES)
    scores = booster.predict(xgb.DMatrix(features(data.x_test)))
    probabilities = two_columns(scores) if classes == 2 else scores
    log_held_out_metrics(data, probabilities.argmax(axis=1), probabilities)
    return log_flavour_model(
        "xgboost", booster, data, booster.predict(xgb.DMatrix(input_example(data))), "sklearn"
    )


def log_xgboost(data: Dataset, estimator_name: str, seed: int) -> str:
    """Fit and log the named xgboost estimator (`classifier` or `booster`) in the active run."""
    return {"classifier": log_classifier, "booster": log_booster}[estimator_name](data, seed)
