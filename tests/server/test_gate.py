"""The gate: a new version serves the same contract and answers its own input example."""

from __future__ import annotations

import dataclasses

import pytest

from server.live.gate import GateRefused, check_candidate
from server.live.loaded_model import FeatureSpec, LoadedModel
from server.runtimes.signature import Features


def _with_features(model: LoadedModel, features: tuple[FeatureSpec, ...]) -> LoadedModel:
    return dataclasses.replace(model, signature_features=Features(features))


def test_the_same_contract_passes(loaded_champion: LoadedModel) -> None:
    check_candidate(loaded_champion, loaded_champion, allow_signature_change=False)


def test_a_missing_feature_is_refused(loaded_champion: LoadedModel) -> None:
    candidate = _with_features(loaded_champion, loaded_champion.features[:-1])
    with pytest.raises(GateRefused, match=r"drops 1 feature\(s\) \(feature_30\)"):
        check_candidate(loaded_champion, candidate, allow_signature_change=False)


def test_a_retyped_feature_is_refused(loaded_champion: LoadedModel) -> None:
    features = (FeatureSpec("feature_1", "long", True), *loaded_champion.features[1:])
    with pytest.raises(GateRefused, match="changes the type of feature_1"):
        check_candidate(
            loaded_champion, _with_features(loaded_champion, features), allow_signature_change=False
        )


def test_a_signature_change_passes_when_allowed(loaded_champion: LoadedModel) -> None:
    features = (FeatureSpec("feature_1", "long", True), *loaded_champion.features[1:])
    check_candidate(loaded_champion, _with_features(loaded_champion, features), allow_signature_change=True)


def test_a_model_that_fails_its_example_is_refused(loaded_champion: LoadedModel, monkeypatch) -> None:
    def broken(features):
        raise RuntimeError("cannot predict")

    candidate = dataclasses.replace(loaded_champion)
    monkeypatch.setattr(candidate.runtime, "score", broken)
    with pytest.raises(GateRefused, match="fails on its own input example: cannot predict"):
        check_candidate(None, candidate, allow_signature_change=False)
