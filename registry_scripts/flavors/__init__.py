"""The MLflow flavours `train` can log a classifier as, and the estimators each one offers.

Each flavour is one function that fits on a `Dataset`, logs the five held-out metrics and the model
in the active run, and returns the logged model's URI for registration. xgboost and lightgbm are
imported only when their flavour runs, so the table itself needs neither extra.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from registry_scripts.dataset import Dataset
from registry_scripts.estimators import BUILDERS, DEFAULT_MODEL_TYPE
from registry_scripts.flavors.common import require
from registry_scripts.flavors.lightgbm import log_lightgbm
from registry_scripts.flavors.sklearn import log_sklearn, log_sklearn_autolog
from registry_scripts.flavors.wrapper import log_wrapper
from registry_scripts.flavors.xgboost import log_xgboost

LogModel = Callable[[Dataset, str, int], str]
"""Fit estimator `name` with `seed` on the data and log it in the active run; the model's URI."""

_SKLEARN_ESTIMATORS = (DEFAULT_MODEL_TYPE, *sorted(set(BUILDERS) - {DEFAULT_MODEL_TYPE}))
_BOOSTING_ESTIMATORS = ("classifier", "booster")


@dataclass(frozen=True)
class Flavor:
    """One way of logging a model: its estimators (the first is the default), how it logs, and the
    optional module (and extra of the same name) it needs."""

    estimators: tuple[str, ...]
    log: LogModel
    autolog: LogModel | None = None
    extra: str | None = None

    @property
    def default_estimator(self) -> str:
        return self.estimators[0]


FLAVORS: dict[str, Flavor] = {
    "wrapper": Flavor(_SKLEARN_ESTIMATORS, log_wrapper),
    "sklearn": Flavor(_SKLEARN_ESTIMATORS, log_sklearn, autolog=log_sklearn_autolog),
    "xgboost": Flavor(_BOOSTING_ESTIMATORS, log_xgboost, extra="xgboost"),
    "lightgbm": Flavor(_BOOSTING_ESTIMATORS, log_lightgbm, extra="lightgbm"),
}
DEFAULT_FLAVOR = "wrapper"
# `--model-type` names an estimator of these flavours only (the scikit-learn ones).
MODEL_TYPE_FLAVORS = frozenset({"wrapper", "sklearn"})


def require_extra(flavor: str) -> None:
    """Fail with the extra to install when `flavor` needs a module that is missing: checked before
    a run starts, so a missing extra leaves no failed run behind."""
    extra = FLAVORS[flavor].extra
    if extra is not None:
        require(extra, extra)


def log_model(data: Dataset, flavor: str, estimator: str, seed: int, *, autolog: bool = False) -> str:
    """Fit and log `estimator` of `flavor` in the active run; the logged model's URI."""
    chosen = FLAVORS[flavor]
    if estimator not in chosen.estimators:
        raise ValueError(f"{flavor} has no estimator {estimator!r}; choose from {list(chosen.estimators)}")
    log = chosen.autolog if autolog else chosen.log
    if log is None:
        raise ValueError(f"the {flavor} flavour has no autologging here")
    return log(data, estimator, seed)
