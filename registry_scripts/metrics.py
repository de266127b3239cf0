"""The five held-out metrics every version carries, whatever the flavour that made it."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score


def held_out_metrics(
    y_true: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray
) -> dict[str, float]:
    """accuracy, f1, precision, recall and ROC AUC of `predicted` classes and `probabilities`
    (one column per class, in class-value order) against `y_true`.

    Binary data gets the positive class's scores, as the registry listing has always shown;
    more classes get the macro average and one-vs-rest AUC, so a test's multiclass model logs
    the same five names.
    """
    if probabilities.shape[1] == 2:
        averaging: dict[str, str] = {"average": "binary"}
        auc = roc_auc_score(y_true, probabilities[:, 1])
    else:
        averaging = {"average": "macro"}
        auc = roc_auc_score(y_true, probabilities, multi_class="ovr")
    return {
        "accuracy": float(accuracy_score(y_true, predicted)),
        "f1": float(f1_score(y_true, predicted, **averaging)),
        "precision": float(precision_score(y_true, predicted, **averaging)),
        "recall": float(recall_score(y_true, predicted, **averaging)),
        "roc_auc": float(auc),
    }
