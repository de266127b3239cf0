"""The limits on what one body may cost (`server/codecs/limits.py`), checked at their source.

The routes' answers to over-limit bodies are in test_invocations.py, test_predict.py and
test_batch_predict.py; here: that the checks count what pandas and pyarrow would decode (and
never more), that they stop as soon as the answer is known, that a Parquet footer's claims are
not taken on trust, and that heavy checks leave the event loop.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model_wrapper import FEATURE_NAMES
from server.codecs.input_bounds import check_containers, check_csv, count_records
from server.codecs.limits import INLINE_CHECK_MAX_BYTES, INLINE_READ_MAX_BYTES, MAX_COLUMNS, MAX_PROBLEMS
from server.codecs.mlflow_protocol import JSON, InvocationCodec, PendingRequest
from server.codecs.parquet_bounds import check_parquet
from server.codecs.records import RecordCodec
from server.errors import BadRequest, InvalidInput
from server.live.loaded_model import LoadedModel
from server.routes.predictions import declined_features, fast_features

UNREADABLE = BadRequest("unreadable")


def _pandas_shape(text: str) -> tuple[int, int] | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            frame = pd.read_csv(io.StringIO(text))
        except Exception:  # noqa: BLE001 - pandas refuses it: nothing to compare
            return None
    return len(frame), len(frame.columns)


def _counted_shape(text: str) -> tuple[int, int]:
    """Rows and header columns as check_csv counts them, without its limits."""
    from server.codecs.input_bounds import _header_fields

    return count_records(text, 10**9) - 1, _header_fields(text)


PIECES = ["a", "1", ",", '"', "\n", " ", "\t", "\r\n", '""', 'x"']


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(PIECES), max_size=30).map("".join))
def test_csv_rows_and_columns_are_counted_as_pandas_counts_them(text: str) -> None:
    """Quotes (doubled inside, spanning lines, stray in a field), blank and whitespace lines,
    `\\r\\n`: whatever pandas reads, the count is its count."""
    shape = _pandas_shape(text)
    if shape is not None:
        assert _counted_shape(text) == shape


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from([*PIECES, "\r", "\r,"]), max_size=30).map("".join))
def test_csv_counts_never_exceed_pandas_with_lone_carriage_returns(text: str) -> None:
    """pandas' tokenizer has quirks after a lone `\\r` (a comma right after one is swallowed, or
    starts the next record); there the count may fall short, never over, so no file pandas reads
    within the limits is refused."""
    shape = _pandas_shape(text)
    if shape is not None:
        rows, columns = _counted_shape(text)
        assert rows <= shape[0]
        assert columns <= shape[1]


def test_csv_rows_are_counted_only_up_to_the_limit() -> None:
    within = "a\n" + "1\n" * 50
    check_csv(within, 50)
    over = "a\n" + "1\n" * 5_000_000
    with pytest.raises(InvalidInput) as raised:
        check_csv(over, 50)
    assert raised.value.message == "the request holds more than 50 rows; at most 50 per request"
    blank_lines = "a\n" + "1\n" * 50 + "\n \n\t\n" * 100  # more lines than rows, still 50 rows
    check_csv(blank_lines, 50)
    quoted = "a,b\n" + '"x\ny",1\n' * 30  # 61 lines, 30 rows: a quoted field spans two lines
    check_csv(quoted, 30)


def test_csv_header_columns_are_counted_only_up_to_the_limit() -> None:
    check_csv(",".join(["c"] * MAX_COLUMNS) + "\n", 10)
    for header in (",".join(["c"] * (MAX_COLUMNS + 1)), ",".join(['"c,\n"'] * (MAX_COLUMNS + 1))):
        with pytest.raises(InvalidInput) as raised:
            check_csv(header + "\n1\n", 10)
        assert raised.value.message == "the request holds more than 1024 columns; at most 1024 per request"


def test_container_walk_stops_at_the_depth_limit_without_recursing() -> None:
    deep: list[object] = []
    for _ in range(100_000):  # far past Python's recursion limit
        deep = [deep]
    too_deep = BadRequest("too deep")
    with pytest.raises(BadRequest) as raised:
        check_containers({"inputs": deep}, 64, too_deep)
    assert raised.value is too_deep
    check_containers({"inputs": json.loads("[" * 63 + "]" * 63)}, 64, too_deep)


def test_container_walk_refuses_an_object_of_too_many_keys() -> None:
    check_containers({"params": {str(i): i for i in range(MAX_COLUMNS)}}, 64, BadRequest("deep"))
    with pytest.raises(InvalidInput) as raised:
        check_containers({"params": {str(i): i for i in range(MAX_COLUMNS + 1)}}, 64, BadRequest("deep"))
    assert raised.value.message == "a JSON object in the request holds 1025 keys; at most 1024 per object"


class CountingDict(dict):
    """A record that counts how many of its keys are looked at one by one."""

    iterated = 0

    def __iter__(self):
        for key in super().__iter__():
            CountingDict.iterated += 1
            yield key


def test_problem_collection_stops_at_max_problems() -> None:
    """Past MAX_PROBLEMS the unknown keys are counted (len), not listed: 1,000 records of 1,000
    unknown keys each cost about MAX_PROBLEMS key visits, not a million."""
    codec = RecordCodec(FEATURE_NAMES)
    good = dict.fromkeys(FEATURE_NAMES, 1.0)
    records = [CountingDict({**good, **{f"k{i}": 0 for i in range(900)}}) for _ in range(1000)]
    CountingDict.iterated = 0
    with pytest.raises(InvalidInput) as raised:
        codec.batch_payload({"records": records}, 1000)
    assert len(raised.value.problems) == MAX_PROBLEMS
    assert raised.value.message == (
        "record 0, key at position 30: is not a feature of this model (and 899999 more problems)"
    )
    assert CountingDict.iterated <= 2 * (len(FEATURE_NAMES) + MAX_PROBLEMS)


def test_a_record_over_the_key_limit_is_not_looked_into() -> None:
    codec = RecordCodec(FEATURE_NAMES)
    record = CountingDict({f"k{i}": 0 for i in range(MAX_COLUMNS + 1)})
    CountingDict.iterated = 0
    with pytest.raises(InvalidInput) as raised:
        codec.single_payload(record)
    assert raised.value.message == "too many keys (1025); a record may hold at most 1024"
    assert CountingDict.iterated == 0


def test_large_bodies_are_read_off_the_event_loop_and_small_ones_inline() -> None:
    """The detailed check of a body the compiled readers declined runs on a worker thread above
    INLINE_CHECK_MAX_BYTES, and everything, compiled readers included, above
    INLINE_READ_MAX_BYTES: one large bad body cannot stall the others. Small ones stay inline."""
    ran_on: dict[str, list[int]] = {"fast": [], "checked": []}

    def fast(body: bytes) -> None:
        ran_on["fast"].append(threading.get_ident())

    def checked(body: bytes) -> np.ndarray:
        ran_on["checked"].append(threading.get_ident())
        return np.zeros((1, 1))

    async def scenario() -> int:
        for size in (INLINE_CHECK_MAX_BYTES, INLINE_CHECK_MAX_BYTES + 1, INLINE_READ_MAX_BYTES + 1):
            body = b" " * size
            if fast_features(fast, body) is None:
                await declined_features(fast, checked, body)
        return threading.get_ident()

    loop = asyncio.run(scenario())
    assert ran_on["fast"][:2] == [loop, loop]
    assert ran_on["fast"][2] != loop
    assert ran_on["checked"][0] == loop
    assert loop not in ran_on["checked"][1:]


def test_invocations_bodies_are_read_as_json_off_the_event_loop(loaded_champion: LoadedModel) -> None:
    """`decode` (on the event loop) runs only the compiled fast readers; Python's JSON reading of
    a body they declined happens in `parse`, on the worker thread."""
    codec = InvocationCodec(loaded_champion.pyfunc, loaded_champion.feature_names, fast=True)
    assert codec.decode(b'{"dataframe_split": ', JSON) == PendingRequest(JSON, b'{"dataframe_split": ')


def _parquet(table: pa.Table, **options: object) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **options)
    return buffer.getvalue()


def _varint(value: int, width: int) -> bytes:
    """`value` as a Thrift varint of exactly `width` bytes (padded with continuation bytes)."""
    out = bytearray()
    for _ in range(width - 1):
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value & 0x7F)
    return bytes(out)


def _zigzag(value: int) -> int:
    return value << 1 if value >= 0 else (-value << 1) - 1


def test_a_parquet_footer_that_understates_the_pages_is_not_believed() -> None:
    """The footer's sizes are rewritten to claim 100 bytes; the page headers, which pyarrow
    allocates by, still say 300 MB, and the walk reads those."""
    table = pa.table({"note": pa.array(["x" * 300_000_000], type=pa.large_string())})
    body = bytearray(_parquet(table, compression="zstd", compression_level=19, use_dictionary=False))
    footer_length = int.from_bytes(body[-8:-4], "little")
    footer = slice(len(body) - 8 - footer_length, len(body) - 8)
    claimed = pq.ParquetFile(io.BytesIO(bytes(body))).metadata.row_group(0).column(0).total_uncompressed_size
    honest = _varint(_zigzag(claimed), 5)
    assert body[footer].count(honest) >= 1
    body[footer] = bytes(body[footer]).replace(honest, _varint(_zigzag(100), 5))
    lying = pq.ParquetFile(io.BytesIO(bytes(body))).metadata
    assert lying.row_group(0).column(0).total_uncompressed_size == 100
    with pytest.raises(InvalidInput) as raised:
        check_parquet(bytes(body), 10, UNREADABLE)
    assert raised.value.message == "the Parquet body decodes to more than 32 MiB"


def test_parquet_values_of_nested_columns_are_counted() -> None:
    """One row, one list of 1,100,000 zeros: a few hundred bytes of zstd, past 10 rows of 1,024 values."""
    table = pa.table({"inputs": pa.array([np.zeros(1_100_000)])})
    with pytest.raises(InvalidInput) as raised:
        check_parquet(_parquet(table, compression="zstd"), 10, UNREADABLE)
    assert raised.value.message == "the Parquet body holds 1100000 values; at most 10240 per request"


def test_parquet_pages_past_the_limit_are_refused_before_they_are_read() -> None:
    """One value per page: 40,000 pages in under a megabyte (and rows within the limit)."""
    table = pa.table({"feature_1": np.arange(40_000, dtype=np.float64)})
    body = _parquet(table, data_page_size=1, write_batch_size=1, use_dictionary=False)
    assert pq.ParquetFile(io.BytesIO(body)).metadata.num_rows == 40_000
    with pytest.raises(InvalidInput) as raised:
        check_parquet(body, 40_000, UNREADABLE)
    assert raised.value.message == "the Parquet body holds more than 32768 pages"


def test_unreadable_parquet_page_headers_are_refused_as_an_unreadable_file() -> None:
    body = bytearray(_parquet(pa.table({"feature_1": [1.0, 2.0]}), use_dictionary=False))
    start = pq.ParquetFile(io.BytesIO(bytes(body))).metadata.row_group(0).column(0).data_page_offset
    body[start] = 0x00  # the header ends before its first field: no page type, no sizes
    with pytest.raises(BadRequest) as raised:
        check_parquet(bytes(body), 10, UNREADABLE)
    assert raised.value is UNREADABLE


def test_parquet_files_within_the_limits_pass_whatever_their_layout() -> None:
    frame = pd.DataFrame(np.random.default_rng(7).random((1000, 30)), columns=list(FEATURE_NAMES))
    for options in ({}, {"compression": "zstd"}, {"use_dictionary": False}, {"row_group_size": 100}):
        check_parquet(_parquet(pa.Table.from_pandas(frame), **options), 1000, UNREADABLE)
    nested = pa.table(
        {
            "tags": pa.array([["a", "b"], ["c"]]),
            "meta": pa.array([{"k": "v"}, {"k": "w"}]),
            "map": pa.array([[("a", "b")], []], type=pa.map_(pa.string(), pa.string())),
            "blob": pa.array([b"\x00\x01", b""]),
            "fixed": pa.array([b"12345678", b"87654321"], pa.binary(8)),
        }
    )
    check_parquet(_parquet(nested), 2, UNREADABLE)
    check_parquet(b"PAR1 not a parquet file", 2, UNREADABLE)  # MLflow's parser says what is wrong
