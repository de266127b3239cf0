"""Requests for /invocations, valid and invalid, sent to both servers by the differential test.

Each case is (name, content type or None, body bytes). Values that must never be echoed back
in an error carry the marker `SECRET`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pandas as pd

SECRET = "s3cr3t-value-7431"
JSON = "application/json"
CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"

Case = tuple[str, str | None, bytes]


def _j(document: object) -> bytes:
    return json.dumps(document).encode()


def _split(frame: pd.DataFrame) -> dict[str, object]:
    return {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def _escaped(body: bytes) -> bytes:
    """`body` with SECRET written as `\\u` escapes only, as a JSON encoder may write any text."""
    return body.replace(SECRET.encode(), "".join(f"\\u{ord(c):04x}" for c in SECRET).encode())


def _wide(frame: pd.DataFrame, columns: int) -> pd.DataFrame:
    """`frame` with extra numeric columns (MLflow drops them) up to `columns` in all."""
    extra = pd.DataFrame(
        1.0, index=frame.index, columns=[f"extra_{i}" for i in range(columns - frame.shape[1])]
    )
    return pd.concat([frame, extra], axis=1)


def valid_cases(rows: pd.DataFrame) -> Iterator[Case]:
    one, five, hundred = rows.head(1), rows.iloc[10:15], rows.head(100)
    yield "split one row", JSON, _j({"dataframe_split": _split(one)})
    yield "split five rows", JSON, _j({"dataframe_split": _split(five)})
    yield "split hundred rows", JSON, _j({"dataframe_split": _split(hundred)})
    yield "split shuffled columns", JSON, _j({"dataframe_split": _split(five[five.columns[::-1]])})
    yield "split extra column", JSON, _j({"dataframe_split": _split(five.assign(extra=1.0))})
    yield "split extra string column", JSON, _j({"dataframe_split": _split(five.assign(note="x"))})
    yield "split with index", JSON, _j({"dataframe_split": {**_split(five), "index": [5, 6, 7, 8, 9]}})
    yield "split integers", JSON, _j({"dataframe_split": _split(five.round().astype(int))})
    yield "split numeric strings", JSON, _j({"dataframe_split": _split(one.astype(str))})
    yield "split booleans", JSON, _j({"dataframe_split": _split(one.assign(feature_2=True))})
    yield "split empty data", JSON, _j({"dataframe_split": {"columns": list(one.columns), "data": []}})
    yield "split large integer", JSON, _j({"dataframe_split": _split(one.assign(feature_4=10**20))})
    yield (
        "split number forms",
        JSON,
        _j({"dataframe_split": _split(one)}).replace(b"17.99", b"1799E-2").replace(b"10.38", b"-0"),
    )
    yield "split underflow", JSON, _j({"dataframe_split": _split(one)}).replace(b"17.99", b"1e-400")
    good, bad = json.dumps(one.to_numpy().tolist()), json.dumps([[1.0, 2.0]])
    yield (
        "split repeated data key",
        JSON,
        b'{"dataframe_split": {"columns": %s, "data": %s, "data": %s}}'
        % (json.dumps(list(one.columns)).encode(), bad.encode(), good.encode()),
    )
    yield "split with params", JSON, _j({"dataframe_split": _split(one), "params": {"threshold": 0.5}})
    yield "split with unknown top key", JSON, _j({"dataframe_split": _split(one), "meta": {"a": 1}})
    yield "records", JSON, _j({"dataframe_records": five.to_dict(orient="records")})
    yield (
        "records extra key",
        JSON,
        _j({"dataframe_records": five.assign(extra=2.0).to_dict(orient="records")}),
    )
    shuffled = [dict(reversed(record.items())) for record in five.to_dict(orient="records")]
    yield "records shuffled keys", JSON, _j({"dataframe_records": shuffled})
    compact = json.dumps({"dataframe_records": one.to_dict(orient="records")}, separators=(",", ":"))
    yield "records compact", JSON, compact.encode()
    one_record = _j({"dataframe_records": one.to_dict("records")})
    yield "records number forms", JSON, one_record.replace(b"17.99", b"1799E-2").replace(b"10.38", b"-0")
    yield "records underflow", JSON, one_record.replace(b"17.99", b"1e-400")
    yield "records large integer", JSON, one_record.replace(b"1001.0", b"%d" % 10**20)
    yield "records integers", JSON, _j({"dataframe_records": five.round().astype(int).to_dict("records")})
    yield "instances records", JSON, _j({"instances": five.to_dict(orient="records")})
    yield "inputs records", JSON, _j({"inputs": five.to_dict(orient="records")})
    yield "inputs columns", JSON, _j({"inputs": five.to_dict(orient="list")})
    yield "charset utf-8", "application/json; charset=utf-8", _j({"dataframe_split": _split(one)})
    yield "charset upper case", "application/json; charset=UTF-8", _j({"dataframe_split": _split(one)})
    yield "csv", CSV, five.to_csv(index=False).encode()
    yield "csv shuffled", CSV, five[five.columns[::-1]].to_csv(index=False).encode()
    yield "csv hundred", CSV, hundred.to_csv(index=False).encode()
    yield "parquet", PARQUET, _parquet(five)
    yield "utf-16 json", JSON, json.dumps({"dataframe_split": _split(one)}).encode("utf-16")


def invalid_cases(rows: pd.DataFrame) -> Iterator[Case]:
    one, five = rows.head(1), rows.iloc[10:15]
    yield "split 29 columns", JSON, _j({"dataframe_split": _split(five.drop(columns=["feature_30"]))})
    yield "split non-numeric", JSON, _j({"dataframe_split": _split(five.assign(feature_2=SECRET))})
    yield (
        "split non-numeric, escaped",
        JSON,
        _escaped(_j({"dataframe_split": _split(five.assign(feature_2=SECRET))})),
    )
    yield "split null", JSON, _j({"dataframe_split": _split(one.assign(feature_2=None))})
    yield "split NaN literal", JSON, _j({"dataframe_split": _split(one)}).replace(b"17.99", b"NaN")
    yield "split Infinity literal", JSON, _j({"dataframe_split": _split(one)}).replace(b"17.99", b"Infinity")
    yield "split overflow", JSON, _j({"dataframe_split": _split(one)}).replace(b"17.99", b"1e400")
    yield "split nested list", JSON, _j({"dataframe_split": _split(one.assign(feature_2=[[1.0]]))})
    yield "split no data", JSON, _j({"dataframe_split": {"columns": list(one.columns)}})
    yield (
        "split short row",
        JSON,
        _j({"dataframe_split": {"columns": list(one.columns), "data": [[1.0, 2.0]]}}),
    )
    yield (
        "split ragged rows",
        JSON,
        _j({"dataframe_split": {"columns": list(one.columns), "data": [[1.0] * 31, [1.0] * 29]}}),
    )
    yield "split no columns", JSON, _j({"dataframe_split": {"data": one.to_numpy().tolist()}})
    yield "split as list", JSON, _j({"dataframe_split": one.to_numpy().tolist()})
    yield "split unknown key", JSON, _j({"dataframe_split": {**_split(one), SECRET: 1}})
    yield "split unknown key, escaped", JSON, _escaped(_j({"dataframe_split": {**_split(one), SECRET: 1}}))
    yield (
        "records missing key",
        JSON,
        _j({"dataframe_records": five.drop(columns=["feature_1"]).to_dict("records")}),
    )
    yield "records as dict", JSON, _j({"dataframe_records": {"feature_1": 1.0}})
    yield (
        "records string value",
        JSON,
        _j({"dataframe_records": one.assign(feature_9=SECRET).to_dict("records")}),
    )
    yield "instances lists", JSON, _j({"instances": one.to_numpy().tolist()})
    yield "inputs lists", JSON, _j({"inputs": one.to_numpy().tolist()})
    yield "inputs ragged columns", JSON, _j({"inputs": {**five.to_dict(orient="list"), "feature_1": [1.0]}})
    # MLflow makes a 0-d object array of this; counting its rows once failed with a 500 (schemathesis).
    yield "inputs unknown column of objects", JSON, _j({"inputs": {"unknown": {SECRET: 1}}})
    yield "two formats", JSON, _j({"dataframe_split": _split(one), "instances": []})
    yield "no format", JSON, _j({"rows": [SECRET]})
    yield "empty object", JSON, b"{}"
    yield "llm messages key", JSON, _j({"messages": [{"role": "user", "content": SECRET}]})
    yield "top-level list", JSON, _j([one.to_dict("records")])
    yield "top-level string", JSON, _j(SECRET)
    yield "not json", JSON, b'{"dataframe_split": ' + SECRET.encode()
    yield "empty body", JSON, b""
    yield "invalid utf-8", JSON, b'{"dataframe_split": "\xff\xfe"}'
    yield "text/plain", "text/plain", _j({"dataframe_split": _split(one)})
    yield "charset latin-1", "application/json; charset=latin-1", _j({"dataframe_split": _split(one)})
    yield "unknown parameter", "application/json; format=pandas-split", _j({"dataframe_split": _split(one)})
    yield "unknown parameter named", f"application/json; {SECRET}=1", _j({"dataframe_split": _split(one)})
    yield "media type upper case", "Application/JSON", _j({"dataframe_split": _split(one)})
    yield "csv 29 columns", CSV, five.drop(columns=["feature_7"]).to_csv(index=False).encode()
    yield "csv non-numeric", CSV, five.assign(feature_3=SECRET).to_csv(index=False).encode()
    yield "csv garbage", CSV, b"\x00\x01\x02" + SECRET.encode()
    yield "csv empty", CSV, b""
    yield "csv invalid utf-8", CSV, b"feature_1\n\xff\n"
    yield "parquet garbage", PARQUET, b"PAR1" + SECRET.encode()
    yield "parquet 29 columns", PARQUET, _parquet(five.drop(columns=["feature_11"]))


# Where MLflow's scoring server answers a client's mistake with a 5xx, this server answers 4xx:
# a malformed request is never a server error here. Each entry is checked to still hold.
DEVIATIONS: dict[str, int] = {
    "no content type": 415,
    "deep nesting": 400,
}


def not_a_number_cases(rows: pd.DataFrame) -> Iterator[Case]:
    """Finite values so extreme the model's answer is NaN: MLflow writes the literal `NaN`."""
    extreme = rows.head(2).assign(feature_7=-1.7976931348623155e308, feature_26=-1.7976931348623157e308)
    yield "split extreme values", JSON, _j({"dataframe_split": _split(extreme)})
    yield "records extreme values", JSON, _j({"dataframe_records": extreme.to_dict(orient="records")})


# Requests MLflow answers with 200 that pass one of this server's limits on what a body may cost
# (`server/codecs/limits.py`), and the answer they get here instead.
LIMITED: dict[str, tuple[int, str]] = {
    "split 1025 columns": (422, "the request holds 1025 columns; at most 1024 per request"),
    "records 1025 keys": (422, "a JSON object in the request holds 1025 keys; at most 1024 per object"),
    "csv 1025 columns": (422, "the request holds more than 1024 columns; at most 1024 per request"),
    "parquet 1025 columns": (422, "the request holds 1025 columns; at most 1024 per request"),
    "params nested 65 deep": (400, "Invalid input. JSON nested more than 64 levels deep is not accepted."),
}


def limited_cases(rows: pd.DataFrame) -> Iterator[Case]:
    wide = _wide(rows.iloc[10:15], 1025)
    yield "split 1025 columns", JSON, _j({"dataframe_split": _split(wide)})
    yield "records 1025 keys", JSON, _j({"dataframe_records": wide.to_dict("records")})
    yield "csv 1025 columns", CSV, wide.to_csv(index=False).encode()
    yield "parquet 1025 columns", PARQUET, _parquet(wide)
    deep = {"dataframe_split": _split(rows.head(1).astype(str)), "params": {"a": "__deep__"}}
    yield "params nested 65 deep", JSON, _j(deep).replace(b'"__deep__"', b"[" * 64 + b"]" * 64)


def deviation_cases(rows: pd.DataFrame) -> Iterator[Case]:
    yield "no content type", None, _j({"dataframe_split": _split(rows.head(1))})
    yield "deep nesting", JSON, b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}"
