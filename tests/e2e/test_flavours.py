"""Every classifier flavour, served from `models:/…@champion` by a real server process: its runtime
answers `/predict` and `/batch-predict` with labels and probabilities, and `/invocations` exactly as
`mlflow models serve` answers for the same registered model (the same bytes for every answer MLflow
gives with 200, the same status for every one it refuses), over the differential corpus.

Each flavour's model is logged as `registry_scripts.train --flavor …` logs it. Only autolog's
(cloudpickle) needs ALLOW_PICKLED_MODELS=true; skops models load with the server's allowlist.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from registry_scripts.processes import ServerProcess, api_process, mlflow_scoring_process
from tests.e2e.invocation_corpus import SECRET, Case, invalid_cases, valid_cases
from tests.registry import (
    CLASS_NAMES,
    FEATURES,
    MULTICLASS_NAMES,
    register_flavor,
    register_multiclass_booster,
)

ROW = {name: float(value) for name, value in FEATURES.iloc[0].items()}
CASES = [*valid_cases(FEATURES), *invalid_cases(FEATURES)]


@dataclass(frozen=True)
class Flavour:
    runtime: str
    register: Callable[[str], str]
    class_names: tuple[str, ...] = CLASS_NAMES
    settings: dict[str, str] = field(default_factory=dict)


FLAVOURS = {
    "sklearn autolog pipeline": Flavour(
        "sklearn",
        lambda name: register_flavor(name, "sklearn", "logistic_regression", autolog=True),
        class_names=("0", "1"),  # autolog logs no metadata: the class values name the classes
        settings={"ALLOW_PICKLED_MODELS": "true"},
    ),
    "sklearn autolog random forest": Flavour(
        "sklearn",
        lambda name: register_flavor(name, "sklearn", "random_forest", autolog=True),
        class_names=("0", "1"),
        settings={"ALLOW_PICKLED_MODELS": "true"},
    ),
    "sklearn gradient boosting": Flavour(
        "sklearn", lambda name: register_flavor(name, "sklearn", "gradient_boosting")
    ),
    "xgboost classifier": Flavour("xgboost", lambda name: register_flavor(name, "xgboost", "classifier")),
    "xgboost booster": Flavour("xgboost", lambda name: register_flavor(name, "xgboost", "booster")),
    "xgboost multiclass booster": Flavour(
        "xgboost", lambda name: register_multiclass_booster(name, "xgboost"), class_names=MULTICLASS_NAMES
    ),
    "lightgbm classifier": Flavour("lightgbm", lambda name: register_flavor(name, "lightgbm", "classifier")),
    "lightgbm booster": Flavour("lightgbm", lambda name: register_flavor(name, "lightgbm", "booster")),
    "lightgbm multiclass booster": Flavour(
        "lightgbm", lambda name: register_multiclass_booster(name, "lightgbm"), class_names=MULTICLASS_NAMES
    ),
}


@dataclass(frozen=True)
class Served:
    flavour: Flavour
    ours: ServerProcess
    theirs: ServerProcess


@pytest.fixture(scope="module", params=list(FLAVOURS))
def served(
    request: pytest.FixtureRequest,
    base_env: dict[str, str],
    client_mlflow: MlflowClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    flavour = FLAVOURS[request.param]
    name = f"flavour-{uuid.uuid4().hex[:8]}"
    version = flavour.register(name)
    client_mlflow.set_registered_model_alias(name, "champion", version)
    uri = f"models:/{name}@champion"
    logs: Path = tmp_path_factory.mktemp("flavour")
    with (
        api_process(
            base_env, logs / "api.log", MODEL_URI=uri, MAX_BATCH_SIZE="1000", **flavour.settings
        ) as ours,
        mlflow_scoring_process(base_env, uri, logs / "serve.log") as theirs,
    ):
        yield Served(flavour, ours, theirs)


def _post(url: str, case: Case) -> httpx.Response:
    _, content_type, body = case
    headers = {"content-type": content_type} if content_type is not None else {}
    return httpx.post(f"{url}/invocations", content=body, headers=headers, timeout=60)


def test_the_flavours_runtime_serves_it(served: Served) -> None:
    metadata = httpx.get(f"{served.ours.url}/model/metadata").json()
    assert metadata["runtime"] == served.flavour.runtime
    assert [c["name"] for c in metadata["classes"]] == list(served.flavour.class_names)


def test_predict_answers_a_label_and_every_class_probability(served: Served) -> None:
    body = httpx.post(f"{served.ours.url}/predict", json=ROW).json()
    names = served.flavour.class_names
    assert body["label"] in names
    assert list(body["probabilities"]) == list(names)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)


def test_batch_predict_answers_each_record_as_predict_does(served: Served) -> None:
    records = [{k: float(v) for k, v in row.items()} for _, row in FEATURES.head(20).iterrows()]
    batch = httpx.post(f"{served.ours.url}/batch-predict", json={"records": records}).json()
    assert batch["count"] == 20
    for record, item in zip(records[:3], batch["predictions"], strict=False):
        single = httpx.post(f"{served.ours.url}/predict", json=record).json()
        assert {k: single[k] for k in ("prediction", "label", "probabilities")} == item


def test_invocations_answer_the_corpus_as_mlflow_models_serve_does(served: Served) -> None:
    mismatches = []
    for case in CASES:
        theirs, ours = _post(served.theirs.url, case), _post(served.ours.url, case)
        if theirs.status_code == 200:
            if ours.status_code != 200 or ours.content != theirs.content:
                mismatches.append(f"{case[0]}: {ours.status_code} {ours.text[:200]} vs {theirs.text[:200]}")
        elif theirs.status_code < 500 and ours.status_code != theirs.status_code:
            mismatches.append(f"{case[0]}: {ours.status_code} vs MLflow's {theirs.status_code}")
        elif ours.status_code >= 500 or SECRET in ours.text or "Traceback" in ours.text:
            mismatches.append(f"{case[0]}: {ours.status_code} {ours.text[:200]}")
    assert mismatches == []


def test_values_the_model_cannot_score_are_answered_as_mlflow_answers_them(served: Served) -> None:
    """1e308 is a finite double the fast path accepts, but a scaler overflows it: scikit-learn's
    pipelines raise (MLflow: 400 BAD_REQUEST), trees and boosters answer. Here: the same."""
    names = list(FEATURES.columns)
    body = json.dumps({"dataframe_split": {"columns": names, "data": [[1e308] * 30, [0.0] * 30]}}).encode()
    case = ("huge values", "application/json", body)
    theirs, ours = _post(served.theirs.url, case), _post(served.ours.url, case)
    assert ours.status_code == theirs.status_code, (ours.text[:300], theirs.text[:300])
    if theirs.status_code == 200:
        assert ours.content == theirs.content
    else:
        assert ours.json()["error_code"] == theirs.json()["error_code"]
        assert ours.json()["message"] == theirs.json()["message"]
