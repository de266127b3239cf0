"""/invocations answers exactly what `mlflow models serve` answers, for the same registered model.

Both servers run for real, on the same `models:/…@champion`. Every case of the corpus goes to
both: the status codes must match; 200 bodies must be equal as JSON; error bodies here must be
`{"error_code", "message", …}` without MLflow's stack trace and without the client's data.
"""

from __future__ import annotations

import gzip

import httpx
import pandas as pd
import pytest

from registry_scripts.dataset import load_frame
from registry_scripts.processes import ServerProcess
from tests.e2e.invocation_corpus import (
    DEVIATIONS,
    LIMITED,
    SECRET,
    Case,
    deviation_cases,
    invalid_cases,
    limited_cases,
    not_a_number_cases,
    valid_cases,
)

ROWS = load_frame()[0]


def _post(url: str, case: Case) -> httpx.Response:
    _, content_type, body = case
    headers = {"content-type": content_type} if content_type is not None else {}
    return httpx.post(f"{url}/invocations", content=body, headers=headers, timeout=60)


def _ids(cases: list[Case]) -> list[str]:
    return [c[0] for c in cases]


VALID = list(valid_cases(ROWS))
INVALID = list(invalid_cases(ROWS))
DEVIATING = list(deviation_cases(ROWS))
NOT_A_NUMBER = list(not_a_number_cases(ROWS))
OVER_A_LIMIT = list(limited_cases(ROWS))


@pytest.mark.parametrize("case", VALID, ids=_ids(VALID))
def test_valid_request_gets_mlflows_answer(
    case: Case, api_server: ServerProcess, mlflow_scoring: ServerProcess
) -> None:
    theirs = _post(mlflow_scoring.url, case)
    ours = _post(api_server.url, case)
    assert (ours.status_code, theirs.status_code) == (200, 200), (ours.text[:300], theirs.text[:300])
    assert ours.json() == theirs.json()
    assert ours.headers["content-type"] == "application/json"


@pytest.mark.parametrize("case", INVALID, ids=_ids(INVALID))
def test_rejected_request_gets_mlflows_status_without_trace_or_data(
    case: Case, api_server: ServerProcess, mlflow_scoring: ServerProcess
) -> None:
    theirs = _post(mlflow_scoring.url, case)
    ours = _post(api_server.url, case)
    assert 400 <= theirs.status_code < 500, f"MLflow answered {theirs.status_code}: {theirs.text[:300]}"
    assert ours.status_code == theirs.status_code, ours.text[:500]
    body = ours.json()
    assert set(body) <= {"error_code", "message", "details", "request_id"}
    assert body["error_code"]
    assert body["message"]
    assert "stack_trace" not in ours.text
    assert "Traceback" not in ours.text
    assert SECRET not in ours.text
    if theirs.headers["content-type"].startswith("application/json"):
        assert body["error_code"] == theirs.json()["error_code"]


@pytest.mark.parametrize("case", NOT_A_NUMBER, ids=_ids(NOT_A_NUMBER))
def test_answers_that_are_not_numbers_are_written_as_mlflow_writes_them(
    case: Case, api_server: ServerProcess, mlflow_scoring: ServerProcess
) -> None:
    theirs = _post(mlflow_scoring.url, case)
    ours = _post(api_server.url, case)
    assert (ours.status_code, theirs.status_code) == (200, 200)
    assert "NaN" in theirs.text
    assert ours.text == theirs.text  # NaN != NaN, so the bytes are compared


@pytest.mark.parametrize("case", DEVIATING, ids=_ids(DEVIATING))
def test_mlflow_5xx_on_a_client_mistake_is_a_4xx_here(
    case: Case, api_server: ServerProcess, mlflow_scoring: ServerProcess
) -> None:
    assert _post(mlflow_scoring.url, case).status_code >= 500
    assert _post(api_server.url, case).status_code == DEVIATIONS[case[0]]


@pytest.mark.parametrize("case", OVER_A_LIMIT, ids=_ids(OVER_A_LIMIT))
def test_a_request_over_a_limit_is_refused_here_though_mlflow_answers_it(
    case: Case, api_server: ServerProcess, mlflow_scoring: ServerProcess
) -> None:
    """The one kind of request MLflow answers with 200 that this server does not: one past a limit
    on what a body may cost (README, errors), refused with the limit's name. Each is checked to
    still be one MLflow answers."""
    assert _post(mlflow_scoring.url, case).status_code == 200
    ours = _post(api_server.url, case)
    status, message = LIMITED[case[0]]
    assert ours.status_code == status, ours.text[:500]
    assert ours.json()["message"] == message


def test_a_compressed_body_is_refused_here_and_misread_by_mlflow(
    api_server: ServerProcess, mlflow_scoring: ServerProcess
) -> None:
    """MLflow ignores Content-Encoding and reads gzip as JSON; this server says what is wrong."""
    body = gzip.compress(
        httpx.Request("POST", "/", json={"dataframe_split": {"columns": ["a"], "data": [[1]]}}).content
    )
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    theirs = httpx.post(f"{mlflow_scoring.url}/invocations", content=body, headers=headers, timeout=60)
    ours = httpx.post(f"{api_server.url}/invocations", content=body, headers=headers, timeout=60)
    assert theirs.status_code == 400
    assert ours.status_code == 415
    assert ours.json()["message"] == (
        "compressed request bodies are not accepted; send the body with no Content-Encoding"
    )


def test_get_is_not_allowed_on_either(api_server: ServerProcess, mlflow_scoring: ServerProcess) -> None:
    assert httpx.get(f"{mlflow_scoring.url}/invocations").status_code == 405
    assert httpx.get(f"{api_server.url}/invocations").status_code == 405


def test_whole_dataset_in_one_request_is_identical(
    api_server: ServerProcess, mlflow_scoring: ServerProcess
) -> None:
    frame: pd.DataFrame = ROWS
    case = (
        "all rows",
        "application/json",
        httpx.Request(
            "POST",
            "/",
            json={"dataframe_split": {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}},
        ).content,
    )
    assert _post(api_server.url, case).json() == _post(mlflow_scoring.url, case).json()
