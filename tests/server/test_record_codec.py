"""The two readers of strict records agree: msgspec's fast verdict is always the detailed one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_wrapper import FEATURE_NAMES
from server.codecs import json_text
from server.codecs.records import RecordCodec
from server.errors import ServingError
from tests.server.json_samples import ODD_VALUES

CODEC = RecordCodec(FEATURE_NAMES)

numbers = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**70), 2**70))


@st.composite
def records(draw: st.DrawFn) -> dict[str, object]:
    """Mostly valid records, with a few fields missing, added or given odd values."""
    record: dict[str, object] = {name: draw(numbers) for name in FEATURE_NAMES}
    for name in draw(st.lists(st.sampled_from(FEATURE_NAMES), max_size=2)):
        record.pop(name, None)
    for name in draw(st.lists(st.sampled_from(FEATURE_NAMES), max_size=2)):
        record[name] = draw(ODD_VALUES)
    if draw(st.booleans()):
        record[draw(st.text(min_size=1, max_size=4))] = draw(ODD_VALUES)
    return record


def _outcome(read) -> tuple[str, object]:
    try:
        return "rows", read().tolist()
    except ServingError as error:
        return "error", (error.status_code, error.error_code, error.message)


@settings(max_examples=400, deadline=None)
@given(records())
def test_single_record_fast_and_detailed_readers_agree(record: dict[str, object]) -> None:
    body = json.dumps(record).encode()
    fast = _outcome(lambda: CODEC.single(body))
    detailed = _outcome(lambda: CODEC.single_payload(json_text.decode(body)))
    assert fast == detailed


@settings(max_examples=150, deadline=None)
@given(st.lists(records(), min_size=0, max_size=4))
def test_batch_fast_and_detailed_readers_agree(batch: list[dict[str, object]]) -> None:
    body = json.dumps({"records": batch}).encode()
    fast = _outcome(lambda: CODEC.batch(body, 3))
    detailed = _outcome(lambda: CODEC.batch_payload(json_text.decode(body), 3))
    assert fast == detailed


def test_fast_reader_keeps_exact_doubles() -> None:
    values = [0.1, -0.0, 5e-324, 1e100, 2**53 + 1, -123456789]
    record = dict(zip(FEATURE_NAMES, values * 5, strict=True))
    rows = CODEC.single(json.dumps(record).encode())
    np.testing.assert_array_equal(rows[0], np.array([float(v) for v in values * 5]))


@pytest.mark.parametrize("body", [b"", b"   ", b'{"feature_1": 1', b"\xff"])
def test_unreadable_bodies_are_malformed(body: bytes) -> None:
    with pytest.raises(ServingError) as raised:
        CODEC.single(body)
    assert raised.value.error_code == "MALFORMED_REQUEST"
