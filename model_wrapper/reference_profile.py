"""A reference profile of the training data, logged with each model version, for measuring drift.

Drift means comparing live inputs with the data the model was trained on. Training rows are not
stored, so each version's run carries this summary instead (`reference_profile.json`):

* per feature, the training rows in ten quantile bins (deciles), the usual reference for the
  population stability index (PSI): live values fall into the same bins, and the two sets of shares
  are compared;
* per feature, the training CDF on a grid of `KS_POINTS` training quantiles (stored as the count
  of training rows at or below each point, so exactly), enough for the Kolmogorov-Smirnov
  statistic to about 1/(KS_POINTS-1), where storing the rows themselves would make the artifact
  grow with the training set. Its size is fixed by the features instead: for 30 features, tens of
  kilobytes of compact JSON;
* the training rows of each class.

Bin edges and grid points are training values (inverted-CDF quantiles), with repeats dropped, so
a column with ties (or a constant one) has fewer bins. Pure numpy: no MLflow, no server.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PROFILE_ARTIFACT = "reference_profile.json"
PROFILE_FORMAT = 1
PSI_BINS = 10
KS_POINTS = 201


class ProfileError(ValueError):
    """A profile document that cannot be used (wrong format, inconsistent lengths, non-finite, unsorted)."""


@dataclass(frozen=True)
class FeatureProfile:
    """One feature's PSI bins and KS grid; bin i holds `bin_edges[i-1] < x <= bin_edges[i]`."""

    name: str
    bin_edges: np.ndarray
    bin_counts: np.ndarray
    grid: np.ndarray
    grid_cdf: np.ndarray

    def psi_bins(self, values: np.ndarray) -> np.ndarray:
        """The PSI bin of each value, in `[0, psi_bin_count)`."""
        return np.searchsorted(self.bin_edges, values, side="left")

    def grid_bins(self, values: np.ndarray) -> np.ndarray:
        """The grid bin of each value, in `[0, grid_bin_count)`: bin j holds `grid[j-1] < x <= grid[j]`,
        so the live values `<= grid[j]` are the cumulative count of bins 0..j."""
        return np.searchsorted(self.grid, values, side="left")

    @property
    def psi_bin_count(self) -> int:
        return len(self.bin_edges) + 1

    @property
    def grid_bin_count(self) -> int:
        return len(self.grid) + 1


@dataclass(frozen=True)
class ClassShare:
    """The training rows of one class: its value as text and its name."""

    value: str
    label: str
    count: int


@dataclass(frozen=True)
class ReferenceProfile:
    """The profile of a training set: its rows, one `FeatureProfile` per column, the class counts."""

    rows: int
    features: tuple[FeatureProfile, ...]
    classes: tuple[ClassShare, ...]

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def class_shares(self) -> dict[str, float]:
        """Class name -> share of the training rows."""
        return {c.label: c.count / self.rows for c in self.classes}

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (`from_dict` reads it back)."""
        return {
            "format": PROFILE_FORMAT,
            "rows": self.rows,
            "features": [
                {
                    "name": f.name,
                    "bin_edges": f.bin_edges.tolist(),
                    "bin_counts": f.bin_counts.tolist(),
                    "grid": f.grid.tolist(),
                    "grid_rows": np.rint(f.grid_cdf * self.rows).astype(np.int64).tolist(),
                }
                for f in self.features
            ],
            "classes": [{"value": c.value, "label": c.label, "count": c.count} for c in self.classes],
        }

    @classmethod
    def from_dict(cls, document: Any) -> ReferenceProfile:
        """Read and check a document; `ProfileError` names the first field that is wrong."""
        doc = _mapping(document, "profile")
        if type(found := _get(doc, "format", "")) is not int or found != PROFILE_FORMAT:
            raise ProfileError(f"format: expected {PROFILE_FORMAT}, got {found!r}")
        rows = _count(_get(doc, "rows", ""), "rows")
        if rows == 0:
            raise ProfileError("rows: must be positive")
        features = tuple(
            _feature(item, f"features[{i}]", rows) for i, item in enumerate(_list(doc, "features", ""))
        )
        if not features:
            raise ProfileError("features: empty")
        names = [f.name for f in features]
        if len(set(names)) != len(names):
            raise ProfileError("features: duplicate names")
        classes = tuple(
            _class(_mapping(item, f"classes[{i}]"), f"classes[{i}]")
            for i, item in enumerate(_list(doc, "classes", ""))
        )
        if len({c.label for c in classes}) != len(classes):
            raise ProfileError("classes: duplicate labels")
        if sum(c.count for c in classes) != rows:
            raise ProfileError(f"classes: counts sum to {sum(c.count for c in classes)}, not rows={rows}")
        return cls(rows, features, classes)

    @classmethod
    def build(
        cls, features: np.ndarray, names: Sequence[str], classes: np.ndarray, class_names: Sequence[str]
    ) -> ReferenceProfile:
        """Profile a training matrix (columns in `names` order); class value i is named `class_names[i]`."""
        matrix = np.asarray(features, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(names) or matrix.shape[0] == 0:
            raise ValueError(f"features: shape {matrix.shape} does not fit {len(names)} names")
        if not np.isfinite(matrix).all():
            raise ValueError("features: not all finite")
        target = np.asarray(classes)
        if target.shape != (matrix.shape[0],):
            raise ValueError(f"classes: shape {target.shape}, expected ({matrix.shape[0]},)")
        values = target.astype(np.int64)
        if (values != target).any() or values.min() < 0 or values.max() >= len(class_names):
            raise ValueError(f"classes: values other than 0..{len(class_names) - 1}")
        counts = np.bincount(values, minlength=len(class_names))
        shares = tuple(ClassShare(str(i), str(n), int(counts[i])) for i, n in enumerate(class_names))
        profiles = tuple(_profile(str(n), matrix[:, j]) for j, n in enumerate(names))
        return cls(matrix.shape[0], profiles, shares)


def psi(reference_counts: np.ndarray, live_counts: np.ndarray, epsilon: float = 1e-4) -> float:
    """Population stability index of matching bins: `sum((live - ref) * ln(live / ref))` over shares,
    each clipped below at `epsilon` so an empty bin stays finite. Below 0.1 is usually read as
    stable, above 0.25 as a shift."""
    ref = np.asarray(reference_counts, dtype=np.float64)
    live = np.asarray(live_counts, dtype=np.float64)
    if ref.shape != live.shape or ref.ndim != 1:
        raise ValueError(f"bins differ: {ref.shape} reference, {live.shape} live")
    if ref.sum() <= 0 or live.sum() <= 0 or (ref < 0).any() or (live < 0).any():
        raise ValueError("counts must be non-negative with a positive total on each side")
    ref = np.maximum(ref / ref.sum(), epsilon)
    live = np.maximum(live / live.sum(), epsilon)
    return float(np.sum((live - ref) * np.log(live / ref)))


def ks_statistic(feature: FeatureProfile, live_grid_counts: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic of live values against the training data,
    evaluated on the training quantile grid: `max_j |live_cdf(grid[j]) - grid_cdf[j]|`.

    `live_grid_counts` counts live values per grid bin (`grid_bins`). The grid holds every
    1/(KS_POINTS-1) quantile, so for distinct training values and continuous live values the result
    is at most the exact statistic and below it by at most ceil(n/(KS_POINTS-1))/n for n training
    rows: 1/(KS_POINTS-1) when n is a multiple of KS_POINTS-1, never more than that plus 1/n."""
    counts = np.asarray(live_grid_counts, dtype=np.float64)
    if counts.shape != (feature.grid_bin_count,):
        raise ValueError(f"expected {feature.grid_bin_count} grid counts, got shape {counts.shape}")
    total = counts.sum()
    if total <= 0:
        raise ValueError("no live values")
    live_cdf = np.cumsum(counts)[: len(feature.grid)] / total
    return float(np.max(np.abs(live_cdf - feature.grid_cdf)))


def _readonly(values: np.ndarray) -> np.ndarray:
    values.setflags(write=False)
    return values


def _quantiles(ordered: np.ndarray, k: np.ndarray, parts: int) -> np.ndarray:
    """The distinct inverted-CDF quantiles k/parts of sorted values: the smallest value with at
    least k/parts of the rows at or below it (integer arithmetic, so exact)."""
    return np.unique(ordered[np.maximum(-(-k * len(ordered) // parts) - 1, 0)])


def _profile(name: str, column: np.ndarray) -> FeatureProfile:
    ordered = np.sort(column)
    edges = _quantiles(ordered, np.arange(1, PSI_BINS), PSI_BINS)
    grid = _quantiles(ordered, np.arange(KS_POINTS), KS_POINTS - 1)
    bin_counts = np.bincount(np.searchsorted(edges, ordered, side="left"), minlength=len(edges) + 1)
    grid_cdf = np.searchsorted(ordered, grid, side="right") / len(ordered)
    return FeatureProfile(
        name,
        _readonly(edges.astype(np.float64)),
        _readonly(bin_counts.astype(np.int64)),
        _readonly(grid.astype(np.float64)),
        _readonly(grid_cdf.astype(np.float64)),
    )


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProfileError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _get(doc: dict[str, Any], key: str, where: str) -> Any:
    field = f"{where}.{key}" if where else key
    if key not in doc:
        raise ProfileError(f"{field}: missing")
    return doc[key]


def _list(doc: dict[str, Any], key: str, where: str) -> list[Any]:
    value = _get(doc, key, where)
    if not isinstance(value, list):
        raise ProfileError(
            f"{where + '.' if where else ''}{key}: expected a list, got {type(value).__name__}"
        )
    return value


def _count(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProfileError(f"{field}: expected a non-negative integer, got {value!r}")
    return value


def _numbers(doc: dict[str, Any], key: str, where: str) -> np.ndarray:
    values = _list(doc, key, where)
    field = f"{where}.{key}"
    if not values:
        raise ProfileError(f"{field}: empty")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise ProfileError(f"{field}: not all numbers")
    if not all(math.isfinite(v) for v in values):
        raise ProfileError(f"{field}: not all finite")
    return np.array(values, dtype=np.float64)


def _increasing(values: np.ndarray, field: str) -> np.ndarray:
    if (np.diff(values) <= 0).any():
        raise ProfileError(f"{field}: not strictly increasing")
    return _readonly(values)


def _feature(item: Any, where: str, rows: int) -> FeatureProfile:
    doc = _mapping(item, where)
    name = _get(doc, "name", where)
    if not isinstance(name, str) or not name:
        raise ProfileError(f"{where}.name: expected a non-empty string, got {name!r}")
    edges = _increasing(_numbers(doc, "bin_edges", where), f"{where}.bin_edges")
    counts = [_count(c, f"{where}.bin_counts") for c in _list(doc, "bin_counts", where)]
    if len(counts) != len(edges) + 1:
        raise ProfileError(f"{where}.bin_counts: expected {len(edges) + 1} counts, got {len(counts)}")
    if sum(counts) != rows:
        raise ProfileError(f"{where}.bin_counts: sum to {sum(counts)}, not rows={rows}")
    grid = _increasing(_numbers(doc, "grid", where), f"{where}.grid")
    at_or_below = np.array(
        [_count(c, f"{where}.grid_rows") for c in _list(doc, "grid_rows", where)], dtype=np.int64
    )
    if len(at_or_below) != len(grid):
        raise ProfileError(f"{where}.grid_rows: expected {len(grid)} counts, got {len(at_or_below)}")
    if (np.diff(at_or_below) < 0).any() or at_or_below[-1] > rows:
        raise ProfileError(f"{where}.grid_rows: not non-decreasing counts of at most rows={rows}")
    cdf = _readonly(at_or_below / rows)
    return FeatureProfile(name, edges, _readonly(np.array(counts, dtype=np.int64)), grid, cdf)


def _class(doc: dict[str, Any], where: str) -> ClassShare:
    value, label = _get(doc, "value", where), _get(doc, "label", where)
    for key, text in (("value", value), ("label", label)):
        if not isinstance(text, str):
            raise ProfileError(f"{where}.{key}: expected a string, got {text!r}")
    return ClassShare(value, label, _count(_get(doc, "count", where), f"{where}.count"))
