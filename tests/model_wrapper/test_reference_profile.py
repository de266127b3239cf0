"""`model_wrapper.reference_profile`: building, reading back, and the PSI and KS it feeds."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from scipy import stats

from model_wrapper.reference_profile import (
    KS_POINTS,
    PROFILE_FORMAT,
    PSI_BINS,
    FeatureProfile,
    ProfileError,
    ReferenceProfile,
    ks_statistic,
    psi,
)

ROWS = 1000
NAMES = ("a", "b", "c", "ties")
CLASS_NAMES = ("malignant", "benign")


def _training(rng: np.random.Generator, rows: int = ROWS) -> np.ndarray:
    continuous = rng.normal(loc=[0.0, 5.0, -3.0], scale=[1.0, 2.0, 0.5], size=(rows, 3))
    ties = rng.integers(0, 4, size=(rows, 1)).astype(np.float64)  # four values, many ties
    return np.hstack([continuous, ties])


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    return _training(np.random.default_rng(0))


@pytest.fixture(scope="module")
def profile(matrix: np.ndarray) -> ReferenceProfile:
    classes = np.array([0] * 300 + [1] * 700)
    return ReferenceProfile.build(matrix, NAMES, classes, CLASS_NAMES)


def _document(profile: ReferenceProfile) -> dict[str, Any]:
    return json.loads(json.dumps(profile.to_dict()))


def _live(feature: FeatureProfile, values: np.ndarray) -> np.ndarray:
    return np.bincount(feature.grid_bins(values), minlength=feature.grid_bin_count)


def _live_psi(feature: FeatureProfile, values: np.ndarray) -> float:
    counts = np.bincount(feature.psi_bins(values), minlength=feature.psi_bin_count)
    return psi(feature.bin_counts, counts)


def test_build_records_rows_names_and_classes(profile: ReferenceProfile) -> None:
    assert profile.rows == ROWS
    assert profile.feature_names == NAMES
    assert [(c.value, c.label, c.count) for c in profile.classes] == [
        ("0", "malignant", 300),
        ("1", "benign", 700),
    ]
    assert profile.class_shares() == {"malignant": 0.3, "benign": 0.7}


def test_a_class_without_rows_is_listed_with_zero() -> None:
    built = ReferenceProfile.build(np.ones((3, 1)), ["x"], np.array([1, 1, 1]), ["a", "b", "c"])
    assert [(c.label, c.count) for c in built.classes] == [("a", 0), ("b", 3), ("c", 0)]


def test_bins_are_deciles_and_their_counts_add_up(profile: ReferenceProfile, matrix: np.ndarray) -> None:
    for j, feature in enumerate(profile.features):
        assert feature.bin_counts.dtype == np.int64
        assert feature.bin_counts.sum() == ROWS
        assert len(feature.bin_counts) == feature.psi_bin_count == len(feature.bin_edges) + 1
        assert (np.diff(feature.bin_edges) > 0).all()
        recount = np.bincount(feature.psi_bins(matrix[:, j]), minlength=feature.psi_bin_count)
        np.testing.assert_array_equal(recount, feature.bin_counts)
    continuous = profile.features[0]
    assert len(continuous.bin_edges) == PSI_BINS - 1
    np.testing.assert_array_equal(continuous.bin_counts, [ROWS // PSI_BINS] * PSI_BINS)
    # Values 0..3: the deciles are 0, 1, 2 and 3, once each.
    np.testing.assert_array_equal(profile.features[3].bin_edges, [0.0, 1.0, 2.0, 3.0])


def test_grid_cdf_is_exact(profile: ReferenceProfile, matrix: np.ndarray) -> None:
    for j, feature in enumerate(profile.features):
        assert (np.diff(feature.grid) > 0).all()
        assert len(feature.grid) <= KS_POINTS
        expected = [np.mean(matrix[:, j] <= g) for g in feature.grid]
        np.testing.assert_array_equal(feature.grid_cdf, expected)
        assert feature.grid[0] == matrix[:, j].min()
        assert feature.grid[-1] == matrix[:, j].max()
    assert len(profile.features[0].grid) == KS_POINTS
    np.testing.assert_array_equal(profile.features[3].grid, [0.0, 1.0, 2.0, 3.0])


def test_grid_bins_count_live_values_at_or_below_each_grid_point(profile: ReferenceProfile) -> None:
    feature = profile.features[1]
    live = np.random.default_rng(1).normal(5.0, 2.0, 500)
    cumulative = np.cumsum(_live(feature, live))
    assert [cumulative[j] for j in range(len(feature.grid))] == [np.sum(live <= g) for g in feature.grid]


def test_round_trip_through_json(profile: ReferenceProfile) -> None:
    document = _document(profile)
    assert document["format"] == PROFILE_FORMAT
    again = ReferenceProfile.from_dict(document)
    assert again.to_dict() == profile.to_dict()
    assert again.rows == profile.rows
    assert again.classes == profile.classes
    for read, built in zip(again.features, profile.features, strict=True):
        np.testing.assert_array_equal(read.grid_cdf, built.grid_cdf)
        assert read.bin_counts.dtype == np.int64
        assert read.grid.dtype == np.float64


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift(
    profile: ReferenceProfile,
) -> None:
    rng = np.random.default_rng(2)
    same = _training(rng, 2000)
    for j, feature in enumerate(profile.features):
        assert _live_psi(feature, same[:, j]) < 0.05  # sampling noise alone: about 0.015
    feature, std = profile.features[1], 2.0
    assert _live_psi(feature, same[:, 1] + std) > 0.2
    assert psi(feature.bin_counts, feature.bin_counts) == 0.0


def test_psi_refuses_mismatched_or_empty_counts() -> None:
    with pytest.raises(ValueError, match="bins differ"):
        psi(np.array([1, 2]), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="positive total"):
        psi(np.array([1, 2]), np.array([0, 0]))


def test_an_empty_bin_stays_finite() -> None:
    value = psi(np.array([50, 50, 0]), np.array([40, 40, 20]))
    assert np.isfinite(value)
    assert value > 1.0


def test_ks_is_small_for_the_same_distribution_and_large_for_a_shift(profile: ReferenceProfile) -> None:
    rng = np.random.default_rng(3)
    same = _training(rng, 2000)
    for j, feature in enumerate(profile.features[:3]):
        assert ks_statistic(feature, _live(feature, same[:, j])) < 0.06
    feature, std = profile.features[1], 2.0
    assert ks_statistic(feature, _live(feature, same[:, 1] + std)) > 0.3


@pytest.mark.parametrize("shift", [0.0, 0.1, 0.5, 1.0])
def test_ks_is_within_one_grid_step_of_scipy(
    shift: float, profile: ReferenceProfile, matrix: np.ndarray
) -> None:
    rng = np.random.default_rng(4)
    live = _training(rng, 2000)
    for j, feature in enumerate(profile.features[:3]):
        column = live[:, j] + shift * matrix[:, j].std()
        exact = stats.ks_2samp(matrix[:, j], column).statistic
        approx = ks_statistic(feature, _live(feature, column))
        assert approx <= exact + 1e-12
        assert exact - approx <= 1 / (KS_POINTS - 1) + 1e-9


def test_ks_refuses_counts_of_another_length(profile: ReferenceProfile) -> None:
    feature = profile.features[0]
    with pytest.raises(ValueError, match=f"expected {KS_POINTS + 1} grid counts"):
        ks_statistic(feature, np.ones(KS_POINTS))


def _broken(profile: ReferenceProfile, change: str) -> dict[str, Any]:
    document = _document(profile)
    feature = document["features"][1]
    if change == "format":
        document["format"] = PROFILE_FORMAT + 1
    elif change == "unsorted":
        feature["bin_edges"][2], feature["bin_edges"][3] = feature["bin_edges"][3], feature["bin_edges"][2]
    elif change == "counts":
        feature["bin_counts"].pop()
    elif change == "nan":
        feature["grid"][5] = float("nan")
    elif change == "missing":
        del feature["grid_rows"]
    elif change == "missing-rows":
        del document["rows"]
    elif change == "class-sum":
        document["classes"][0]["count"] += 1
    elif change == "cdf-length":
        feature["grid_rows"].pop()
    elif change == "not-an-object":
        document["features"][1] = []
    return document


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("format", f"format: expected {PROFILE_FORMAT}, got {PROFILE_FORMAT + 1}"),
        ("unsorted", "features[1].bin_edges: not strictly increasing"),
        ("counts", f"features[1].bin_counts: expected {PSI_BINS} counts, got {PSI_BINS - 1}"),
        ("nan", "features[1].grid: not all finite"),
        ("missing", "features[1].grid_rows: missing"),
        ("missing-rows", "rows: missing"),
        ("class-sum", f"classes: counts sum to {ROWS + 1}, not rows={ROWS}"),
        ("cdf-length", f"features[1].grid_rows: expected {KS_POINTS} counts, got {KS_POINTS - 1}"),
        ("not-an-object", "features[1]: expected an object, got list"),
    ],
)
def test_from_dict_names_the_field_it_refuses(change: str, message: str, profile: ReferenceProfile) -> None:
    with pytest.raises(ProfileError) as raised:
        ReferenceProfile.from_dict(_broken(profile, change))
    assert str(raised.value) == message


def test_from_dict_refuses_what_is_not_a_document() -> None:
    with pytest.raises(ProfileError, match=r"^profile: expected an object, got str$"):
        ReferenceProfile.from_dict("{}")
