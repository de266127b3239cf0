"""Parquet bodies held to the limits before MLflow's parser (`pandas.read_parquet`) decodes them.

A Parquet file is compressed and encoded: tens of kilobytes of zstd and dictionary encoding can
hold tens of millions of rows, or one string of hundreds of megabytes. So a
body is measured before it is decoded, from what pyarrow itself will read:

1. the footer: rows, columns and column chunks (pyarrow decodes exactly the rows each row group
   declares);
2. every page header pyarrow will read (walked here, in the same byte ranges and order as
   pyarrow's page reader): what each page decompresses to and how many values it holds. The
   footer's own sizes are not trusted, since nothing checks them against the pages;
3. only when the file has string or binary columns: their decoded size, from a read that keeps
   them dictionary-encoded (a column of one long string repeated a thousand times is a thousand
   small indices here, and a thousand long strings in pandas).

Then MLflow's parser decodes the file as it always would, so the frame is exactly MLflow's. A
file whose page headers cannot be read is refused as MLflow refuses an unreadable file (400);
one pyarrow cannot open at all is left to MLflow's parser, which reads no further than the footer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from server.codecs.limits import (
    MAX_COLUMNS,
    MAX_DECODED_BYTES,
    MAX_PARQUET_PAGES,
    max_values,
    too_many_columns,
    too_many_rows,
)
from server.errors import InvalidInput, Problem, ServingError

# MLflow's message for a file it cannot read, without the reader's details.
UNREADABLE = (
    "Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid Parquet Pandas "
    "DataFrame produced using the `pandas.DataFrame.to_parquet()` method."
)
_BINARY_TYPES = (pa.types.is_binary, pa.types.is_string, pa.types.is_large_binary, pa.types.is_large_string)
_FIXED_WIDTH = {"BOOLEAN": 1, "INT32": 4, "INT64": 8, "INT96": 12, "FLOAT": 4, "DOUBLE": 8}
_DICTIONARY_PAGE, _DATA_PAGE, _DATA_PAGE_V2 = 2, 0, 3
# parquet-mr up to 1.2.8 left the dictionary page header out of a chunk's size; pyarrow reads up
# to 100 bytes past such chunks (PARQUET-816), and so does the walk.
_OLD_PARQUET_MR = re.compile(r"parquet-mr version (\d+)\.(\d+)\.(\d+)")
_PARQUET_816_PADDING = 100


def _over(what: str) -> InvalidInput:
    return InvalidInput.from_problems([Problem(f"the Parquet body {what}")])


@dataclass
class _Totals:
    pages: int = 0
    decompressed: int = 0  # bytes the pages decompress to
    values: int = 0  # leaf values, nested ones and nulls included
    fixed: int = 0  # bytes the fixed-width values decode to


def check_parquet(body: bytes, max_rows: int, unreadable: ServingError) -> None:
    """Refuses `body` (InvalidInput, naming the limit) if decoding it would pass `max_rows` rows,
    MAX_COLUMNS columns or the decoded-size, value and page limits; raises `unreadable` when its
    page headers cannot be read."""
    try:
        parquet = pq.ParquetFile(pa.BufferReader(body))
    except Exception:  # noqa: BLE001 - not a Parquet file: MLflow's parser says so, reading no further
        return
    meta = parquet.metadata
    rows = sum(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    if max(rows, meta.num_rows) > max_rows:
        raise too_many_rows(max(rows, meta.num_rows), max_rows)
    if meta.num_columns > MAX_COLUMNS:
        raise too_many_columns(meta.num_columns)
    if meta.num_row_groups * meta.num_columns > MAX_PARQUET_PAGES:
        raise _over(f"holds more than {MAX_PARQUET_PAGES} column chunks")
    totals = _Totals()
    try:
        _walk_pages(body, parquet, totals, max_rows)
    except _Corrupt:
        raise unreadable from None
    if totals.values > max_values(max_rows):
        raise _over(f"holds {totals.values} values; at most {max_values(max_rows)} per request")
    if max(totals.decompressed, totals.fixed) > MAX_DECODED_BYTES:
        raise _decodes_to_more()
    binary = [i for i in range(meta.num_columns) if parquet.schema.column(i).physical_type == "BYTE_ARRAY"]
    if binary:
        _check_binary_columns(body, binary, max_rows)


def _decodes_to_more() -> InvalidInput:
    return _over(f"decodes to more than {MAX_DECODED_BYTES // (1024 * 1024)} MiB")


def _walk_pages(body: bytes, parquet: pq.ParquetFile, totals: _Totals, max_rows: int) -> None:
    """Every page header of every column chunk, as pyarrow's page reader reads them."""
    meta = parquet.metadata
    old = _OLD_PARQUET_MR.search(meta.created_by or "")
    padded = old is not None and tuple(map(int, old.groups())) < (1, 2, 9)
    widths = []
    for i in range(meta.num_columns):
        column = parquet.schema.column(i)
        width = column.length if column.physical_type == "FIXED_LEN_BYTE_ARRAY" else None
        widths.append(_FIXED_WIDTH.get(column.physical_type, width or 0))
    for group in range(meta.num_row_groups):
        row_group = meta.row_group(group)
        for i in range(meta.num_columns):
            chunk = row_group.column(i)
            start = chunk.data_page_offset
            if chunk.has_dictionary_page and 0 < chunk.dictionary_page_offset < start:
                start = chunk.dictionary_page_offset
            length = chunk.total_compressed_size
            if start < 0 or length < 0 or start + length > len(body):
                raise _Corrupt
            end = min(len(body), start + length + (_PARQUET_816_PADDING if padded else 0))
            values = _walk_chunk(body, start, end, chunk.num_values, totals)
            totals.fixed += values * widths[i]
            if totals.pages > MAX_PARQUET_PAGES:
                raise _over(f"holds more than {MAX_PARQUET_PAGES} pages")
            if totals.values > max_values(max_rows) or totals.decompressed > MAX_DECODED_BYTES:
                return  # over a limit already: the caller says which


def _walk_chunk(body: bytes, position: int, end: int, declared: int, totals: _Totals) -> int:
    """The pages of one column chunk: pyarrow reads them while it has seen fewer values than the
    footer declares and the chunk's bytes last. Returns the values they hold."""
    seen = 0
    while seen < declared and position < end:
        fields, position = _struct(body, position, end, 0, True)
        page_type, uncompressed, compressed = fields.get(1), fields.get(2), fields.get(3)
        if not isinstance(page_type, int) or not isinstance(uncompressed, int):
            raise _Corrupt
        if not isinstance(compressed, int) or compressed < 0 or uncompressed < 0:
            raise _Corrupt
        position += compressed
        if position > end:
            raise _Corrupt
        totals.pages += 1
        if page_type == _DICTIONARY_PAGE:
            totals.decompressed += uncompressed
        elif page_type in (_DATA_PAGE, _DATA_PAGE_V2):
            page = fields.get(5 if page_type == _DATA_PAGE else 8)
            count = page.get(1) if isinstance(page, dict) else None
            if not isinstance(count, int) or count < 0:
                raise _Corrupt
            seen += count
            totals.values += count
            totals.decompressed += uncompressed
        if totals.pages > MAX_PARQUET_PAGES:
            break
    return seen


def _check_binary_columns(body: bytes, leaves: list[int], max_rows: int) -> None:
    """The decoded size of the string and binary columns, read as dictionaries (cheap) and counted
    as pandas would hold them (every value at full length). The leaves are named by index: names
    can collide (a column `a.b` and a field `b` of a struct `a` share the path `a.b`). Every other
    column is read as it is: the page walk has bounded what those decode to."""
    parquet = pq.ParquetFile(pa.BufferReader(body), read_dictionary=leaves)
    try:
        table = parquet.read(use_threads=False, use_pandas_metadata=False)
    except Exception:  # noqa: BLE001 - pyarrow cannot decode it: neither can MLflow's parser
        return
    if table.num_rows > max_rows:
        raise too_many_rows(table.num_rows, max_rows)
    decoded = 0
    for column in table.columns:
        for chunk in column.chunks:
            decoded += _decoded_bytes(chunk)
            if decoded > MAX_DECODED_BYTES:
                raise _decodes_to_more()


def _decoded_bytes(array: pa.Array) -> int:
    """Bytes `array` takes once every dictionary is expanded (values at full length, offsets)."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        values = kind.value_type
        if any(test(values) for test in _BINARY_TYPES):
            lengths = pc.binary_length(array.dictionary)
            total = pc.sum(pc.take(lengths, array.indices)).as_py() or 0
            return total + 8 * len(array)
        try:
            return len(array) * max(1, values.bit_width // 8)
        except ValueError:  # not fixed-width: no such dictionary comes out of a Parquet file
            return array.nbytes
    if isinstance(array, pa.MapArray):
        return 8 * len(array) + _decoded_bytes(array.keys) + _decoded_bytes(array.items)
    if isinstance(array, (pa.ListArray, pa.LargeListArray, pa.FixedSizeListArray)):
        return 8 * len(array) + _decoded_bytes(array.flatten())
    if isinstance(array, pa.StructArray):
        return len(array) + sum(_decoded_bytes(child) for child in array.flatten())
    return array.nbytes


class _Corrupt(Exception):
    """A page header that cannot be read as Thrift's compact protocol (or lies outside its chunk)."""


# Thrift compact protocol: just enough to read a PageHeader and skip what it does not need. Written
# with local variables and no per-byte calls: it runs once per page of every Parquet body.
_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(13)
_INTEGERS = (_I16, _I32, _I64)
_MAX_NESTING = 16
_MAX_ELEMENTS = 4096  # no field of a page header is a collection; an unknown one is skipped, not read


def _varint(data: bytes, position: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while position < end and shift <= 63:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
    raise _Corrupt


def _struct(data: bytes, position: int, end: int, depth: int, keep: bool) -> tuple[dict[int, object], int]:
    """Where a struct ends and, when `keep`, its integer fields and (one level down) its struct
    fields' integer fields by id; everything else skipped."""
    if depth > _MAX_NESTING:
        raise _Corrupt
    fields: dict[int, object] = {}
    last = 0
    while position < end:
        header = data[position]
        position += 1
        kind = header & 0x0F
        if kind == _STOP:
            return fields, position
        if header >> 4:
            last += header >> 4
        else:
            value, position = _varint(data, position, end)
            last = (value >> 1) ^ -(value & 1)
        if kind in _INTEGERS:
            if position < end and data[position] < 0x80:  # one byte: most of them
                value = data[position]
                position += 1
            else:
                value, position = _varint(data, position, end)
            if keep:
                fields[last] = (value >> 1) ^ -(value & 1)
        elif kind == _STRUCT:
            child, position = _struct(data, position, end, depth + 1, keep and depth == 0)
            if keep:
                fields[last] = child
        elif kind not in (_TRUE, _FALSE):  # a boolean field is its header alone
            position = _skip(data, position, end, kind, depth)
    raise _Corrupt


def _skip(data: bytes, position: int, end: int, kind: int, depth: int) -> int:
    """Where a value of type `kind` (not a boolean field) that starts at `position` ends."""
    if kind in (_TRUE, _FALSE, _BYTE):  # a boolean element of a collection is one byte
        position += 1
    elif kind in _INTEGERS:
        _, position = _varint(data, position, end)
    elif kind == _DOUBLE:
        position += 8
    elif kind == _BINARY:
        length, position = _varint(data, position, end)
        position += length
    elif kind in (_LIST, _SET, _MAP):
        if depth + 1 > _MAX_NESTING or position >= end:
            raise _Corrupt
        if kind == _MAP:
            size, position = _varint(data, position, end)
            kinds = (data[position] >> 4, data[position] & 0x0F) if size and position < end else ()
            position += 1 if size else 0
        else:
            size, kinds = data[position] >> 4, (data[position] & 0x0F,)
            position += 1
            if size == 15:
                size, position = _varint(data, position, end)
        if size > _MAX_ELEMENTS:
            raise _Corrupt
        for _ in range(size):
            for element in kinds:
                position = _skip(data, position, end, element, depth + 1)
    elif kind == _STRUCT:
        _, position = _struct(data, position, end, depth + 1, False)
    else:
        raise _Corrupt
    if position > end:
        raise _Corrupt
    return position
