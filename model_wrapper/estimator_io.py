"""Saving and loading the estimator with skops, never pickle.

skops reconstructs objects from an explicit description instead of executing a pickle stream.
Types skops does not trust by default must be named here; anything else in a file is refused,
at save time (so we never write what we will not read) and at load time (so a tampered
artifact fails loudly rather than running code).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

# Types beyond skops' defaults that scikit-learn's classifiers contain: the fitted trees of tree
# models and forests, and of histogram gradient boosting. Both hold arrays only and execute
# nothing on load. The server loads `mlflow.sklearn` skops files with this list too
# (`server.live.mlflow_models`).
TRUSTED_TYPES: frozenset[str] = frozenset(
    {"sklearn.tree._tree.Tree", "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"}
)


class UntrustedArtifactError(ValueError):
    """An estimator file contains types outside the allowlist."""


def _check_trusted(untrusted: list[str], where: str, also_trusted: frozenset[str] = frozenset()) -> None:
    unknown = sorted(set(untrusted) - TRUSTED_TYPES - also_trusted)
    if unknown:
        raise UntrustedArtifactError(f"{where} contains types that are not trusted: {unknown}")


def save_estimator(estimator: BaseEstimator, path: Path) -> None:
    """Write `estimator` to `path` in skops format, refusing types we would not load."""
    import skops.io as sio  # imported on use: its type table imports all of scikit-learn

    data = sio.dumps(estimator)
    _check_trusted(sio.get_untrusted_types(data=data), type(estimator).__name__)
    path.write_bytes(data)


def load_estimator(path: str | Path, also_trusted: frozenset[str] = frozenset()) -> BaseEstimator:
    """Read an estimator written by `save_estimator` (or by MLflow with skops), refusing types
    beyond skops' defaults, `TRUSTED_TYPES` and the caller's `also_trusted`."""
    import skops.io as sio

    untrusted = sio.get_untrusted_types(file=path)
    _check_trusted(untrusted, str(path), also_trusted)
    return sio.load(path, trusted=untrusted)
