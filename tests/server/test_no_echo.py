"""No error answer repeats what the client sent, however it was written (README: "never the
client's data echoed back").

For generated strings (any Unicode, one character or a few, quotes, backslashes, control
characters), put where a key, a value or a column name belongs in every layout of every
prediction route (JSON written with `\\u` escapes or as raw UTF-8, CSV, zstd-compressed
Parquet), the answer may hold the string no more often than the answer to the same request with
a neutral string of the same length: so a string that happens to be a word of the usual message
("to", "a") does not count as an echo, and any other occurrence, raw, JSON-escaped or as repr()
writes it, does.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from model_wrapper import FEATURE_NAMES
from tests.server.conftest import record

NAMES = list(FEATURE_NAMES)
PROTOCOL = {
    "dataframe_split",
    "dataframe_records",
    "instances",
    "inputs",
    "params",
    "columns",
    "data",
    "index",
}
# What pandas, MLflow or Python read as a number (or a missing one) rather than as text: such a
# value is not refused, or refused by another message, so it has no neutral twin.
NUMBER_LIKE = re.compile(r"(?i)[-+]?(inf(inity)?|nan|n/?a|null|none|<na>|#n/a.*|-?1\.#(ind|qnan))?")
TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12)

Request = tuple[str, bytes, dict[str, str]]


def _json(document: object, ascii_only: bool) -> bytes:
    return json.dumps(document, ensure_ascii=ascii_only).encode("utf-8")


def _frame(row: dict[str, float], text: str, *, as_column: bool) -> pd.DataFrame:
    frame = pd.DataFrame([row]).astype({"feature_2": object})
    if as_column:
        return frame.rename(columns={"feature_30": text})  # feature_30 missing, an unknown column
    frame.loc[0, "feature_2"] = text
    return frame


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, compression="zstd")
    return buffer.getvalue()


JSON_TYPE = {"content-type": "application/json"}


def layouts(row: dict[str, float], ascii_only: bool) -> dict[str, Callable[[str], Request]]:
    def js(route: str, document: object) -> Request:
        return route, _json(document, ascii_only), JSON_TYPE

    missing = {k: v for k, v in row.items() if k != "feature_30"}
    return {
        "predict key": lambda t: js("/predict", {**row, t: 1.0}),
        "predict value": lambda t: js("/predict", {**row, "feature_2": t}),
        "batch key": lambda t: js("/batch-predict", {"records": [{**row, t: 1.0}]}),
        "batch top": lambda t: js("/batch-predict", {"records": [row], t: 1}),
        "batch value": lambda t: js("/batch-predict", {"records": [{**row, "feature_2": t}]}),
        "split value": lambda t: js(
            "/invocations",
            {
                "dataframe_split": {
                    "columns": NAMES,
                    "data": [[row[n] if n != "feature_2" else t for n in NAMES]],
                }
            },
        ),
        "split column": lambda t: js(
            "/invocations", {"dataframe_split": {"columns": [*NAMES[:-1], t], "data": [list(row.values())]}}
        ),
        "split key": lambda t: js("/invocations", {"dataframe_split": {"columns": NAMES, "data": [], t: 1}}),
        "records key": lambda t: js("/invocations", {"dataframe_records": [{**missing, t: 1.0}]}),
        "records value": lambda t: js("/invocations", {"dataframe_records": [{**row, "feature_2": t}]}),
        "inputs column": lambda t: js(
            "/invocations", {"inputs": {**{k: [v] for k, v in missing.items()}, t: [1]}}
        ),
        "instances value": lambda t: js("/invocations", {"instances": [[t, 1.0]]}),
        "top key": lambda t: js("/invocations", {t: 1}),
        "csv value": lambda t: (
            "/invocations",
            _frame(row, t, as_column=False).to_csv(index=False).encode(),
            {"content-type": "text/csv"},
        ),
        "csv column": lambda t: (
            "/invocations",
            _frame(row, t, as_column=True).to_csv(index=False).encode(),
            {"content-type": "text/csv"},
        ),
        "parquet value": lambda t: (
            "/invocations",
            _parquet(_frame(row, t, as_column=False)),
            {"content-type": "application/vnd.apache.parquet"},
        ),
        "parquet column": lambda t: (
            "/invocations",
            _parquet(_frame(row, t, as_column=True)),
            {"content-type": "application/vnd.apache.parquet"},
        ),
    }


LAYOUTS = list(layouts({}, True))


def _neutral(text: str) -> str:
    """A string of as many characters, of a letter `text` does not hold (never a number)."""
    letter = next(c for c in "qzjxkwv" if c not in text)
    return letter * len(text)


def _answer(client: TestClient, request: Request) -> tuple[int, str]:
    route, content, headers = request
    response = client.post(route, content=content, headers=headers)
    if response.status_code >= 400:
        body = response.json()
        return response.status_code, response.text.replace(body.get("request_id", "\0"), "")
    return response.status_code, ""


def _forms(text: str) -> set[str]:
    return {text, json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1], repr(text)[1:-1]} - {""}


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=TEXT, layout=st.sampled_from(LAYOUTS), ascii_only=st.booleans())
def test_no_error_answer_repeats_the_clients_text(
    client: TestClient, dataset: pd.DataFrame, text: str, layout: str, ascii_only: bool
) -> None:
    assume(text not in NAMES)  # the model's own names locate problems, and stay
    assume(text != "records")  # as a top-level key of /batch-predict, it is the field itself
    assume(text.strip() != "")  # spaces alone: how every message separates its words
    assume(NUMBER_LIKE.fullmatch(text.strip()) is None)
    try:
        float(text.strip().replace("_", ""))
        assume(False)
    except ValueError:
        pass
    build = layouts(record(dataset), ascii_only)[layout]
    status, answer = _answer(client, build(text))
    assert status < 500, answer
    if status < 400:
        return
    _, baseline = _answer(client, build(_neutral(text)))
    for form in _forms(text):
        assert answer.count(form) <= baseline.count(form), (layout, form, answer, baseline)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_is_refused_for_a_neutral_text(
    client: TestClient, dataset: pd.DataFrame, layout: str
) -> None:
    """Each layout is a request that fails (so the property above compares error answers), and
    fails without a 5xx."""
    status, _ = _answer(client, layouts(record(dataset), True)[layout]("qqq"))
    assert 400 <= status < 500
