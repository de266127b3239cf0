"""/invocations bodies held to the limits (`server.codecs.limits`) before MLflow's parsers read them.

MLflow's parsers read whatever they are given: a CSV of five million rows or of one row and five
million columns, JSON nested until Python's recursion limit (a 500 escapes), an object with
700,000 keys. These checks run on the general path only (a worker thread, after the fast readers
declined the body) and cost one pass that builds nothing per value: the document's containers
are walked once, the CSV text is searched by compiled regular expressions that stop as soon as
the answer is known.
"""

from __future__ import annotations

import re
from typing import Any

from server.codecs.limits import (
    MAX_COLUMNS,
    MAX_JSON_DEPTH,
    too_many_columns,
    too_many_rows,
)
from server.errors import InvalidInput, Problem

_CONTAINERS = (dict, list)
_CONTAINER_TYPES = frozenset(_CONTAINERS)  # what orjson and json make of JSON's objects and arrays


def check_document(document: dict[str, Any], max_rows: int, too_deep: Exception) -> None:
    """Depth, keys per object, rows and columns of a decoded /invocations JSON document.

    Raises `too_deep` past MAX_JSON_DEPTH levels, `InvalidInput` past MAX_COLUMNS keys in an
    object (or values in a `dataframe_split` row, or names in its `columns`) and past `max_rows`
    rows in whichever layout the body uses.
    """
    check_containers(document, MAX_JSON_DEPTH, too_deep)
    _check_layout(document, max_rows)


def check_containers(value: Any, levels: int, too_deep: Exception) -> None:
    """Raises `too_deep` if `value` nests more than `levels` levels of arrays and objects, and
    `InvalidInput` if one of its objects holds more than MAX_COLUMNS keys. One pass over the
    containers, level by level, with no recursion."""
    level: list[Any] = [value] if isinstance(value, _CONTAINERS) else []
    for _ in range(levels):
        children: list[Any] = []
        for node in level:
            if type(node) is dict:
                if len(node) > MAX_COLUMNS:
                    raise InvalidInput.from_problems(
                        [
                            Problem(
                                f"a JSON object in the request holds {len(node)} keys; "
                                f"at most {MAX_COLUMNS} per object"
                            )
                        ]
                    )
                values = node.values()
            else:
                values = node
            # Rows of numbers are most nodes: `isdisjoint` over their types settles them in C.
            if not _CONTAINER_TYPES.isdisjoint(map(type, values)):
                children += [child for child in values if isinstance(child, _CONTAINERS)]
        if not children:
            return
        level = children
    if level:
        raise too_deep


def _check_layout(document: dict[str, Any], max_rows: int) -> None:
    """Rows (and a split's columns) as MLflow's parsers would make them, counted with `len`."""
    split = document.get("dataframe_split")
    if isinstance(split, dict):
        columns, data = split.get("columns"), split.get("data")
        if isinstance(columns, list) and len(columns) > MAX_COLUMNS:
            raise too_many_columns(len(columns))
        if isinstance(data, list):
            _check_rows(len(data), max_rows)
            widest = max((len(row) for row in data if isinstance(row, list)), default=0)
            if widest > MAX_COLUMNS:
                raise too_many_columns(widest)
    for layout in ("dataframe_records", "instances", "inputs"):
        value = document.get(layout)
        if isinstance(value, list):
            _check_rows(len(value), max_rows)
        elif isinstance(value, dict):  # columns: as many rows as the longest one
            _check_rows(max((len(v) for v in value.values() if isinstance(v, list)), default=0), max_rows)


def _check_rows(rows: int, max_rows: int) -> None:
    if rows > max_rows:
        raise too_many_rows(rows, max_rows)


# pandas' C tokenizer, as `pd.read_csv` runs it by default (comma, double quote with doubled
# quotes inside, `\n`, `\r\n` or `\r` ending a record, lines of only spaces and tabs skipped, the
# first record the header). A field starting with a quote runs to the closing quote (newlines and
# commas included) and then, unquoted, to the next comma or line end; any other field runs to the
# next comma or line end, quotes and all. The possessive `*+` keeps a quote that is never closed
# from being read as any other parse: pandas refuses such a file, and so does the count here.
_FIELD = re.compile(r'(?:"(?:[^"]|"")*+"[^,\r\n]*|(?!")[^,\r\n]*)')
_RECORD = re.compile(rf"{_FIELD.pattern}(?:,{_FIELD.pattern})*")
_BLANK = re.compile(r"[ \t]*")
# pandas swallows a comma right after a lone `\r` (its tokenizer's "\r-delimited files" rule).
_LINE_END = re.compile(r"\r\n|\r,?|\n")
_BLANK_LINES = re.compile(r"(?:[ \t]*(?:\r\n|\r,?|\n))*")
# A line that is not blank, with the blank lines before it: one match per record.
_NON_BLANK_LINE = re.compile(r"(?:[ \t]*(?:\r\n|\r,?|\n))*+[ \t]*[^ \t\r\n][^\r\n]*")


def check_csv(text: str, max_rows: int) -> None:
    """At most `max_rows` rows and MAX_COLUMNS columns in the CSV text, as `pd.read_csv` counts.

    Never more than pandas counts, so no file pandas reads within the limits is refused; past a
    limit, counting stops. Cheap on files within them: a file with no more line ends than
    `max_rows` + 1 cannot hold more rows, and its rows are not counted at all; otherwise each
    record is one match of a compiled expression, blank lines included in the next one's.
    """
    text = text.removeprefix("\ufeff")
    header = _header_fields(text)
    if header > MAX_COLUMNS:
        raise too_many_columns(header, at_least=True)
    # Records are at most the line ends, plus the text after the last one: no more rows than that.
    ends = text.count("\n")
    if "\r" in text:
        ends += text.count("\r") - text.count("\r\n")
    if ends - text.endswith(("\n", "\r")) <= max_rows:
        return
    if count_records(text, max_rows + 2) - 1 > max_rows:
        raise too_many_rows(max_rows + 1, max_rows, at_least=True)


def count_records(text: str, most: int) -> int:
    """Records (header included, blank lines not) pandas would read, counted up to `most`; in a
    file pandas refuses (a quote never closed), those before the quote."""
    count, position, end = 0, 0, len(text)
    if '"' not in text:  # every line is a record
        while count < most and (line := _NON_BLANK_LINE.match(text, position)) is not None:
            count, position = count + 1, line.end()
        return count
    while count < most:
        position = _BLANK_LINES.match(text, position).end()  # type: ignore[union-attr]
        if position >= end:
            break
        record = _RECORD.match(text, position)
        if record is None:  # the first field opens a quote that is never closed
            break
        if not _BLANK.fullmatch(record[0]):  # spaces alone, before the end of the text
            count += 1
        if record.end() == end:
            break
        line_end = _LINE_END.match(text, record.end())
        if line_end is None:  # a later field opens a quote that is never closed
            break
        position = line_end.end()
    return count


def _header_fields(text: str) -> int:
    """Fields in the first record that is not blank, counted up to MAX_COLUMNS + 1."""
    position = _BLANK_LINES.match(text).end()  # type: ignore[union-attr]
    line_end = _LINE_END.search(text, position)
    line = text[position : line_end.start() if line_end else len(text)]
    if _BLANK.fullmatch(line):
        return 0
    if '"' not in line:
        return line.count(",") + 1
    fields = 0
    while fields <= MAX_COLUMNS:
        field = _FIELD.match(text, position)
        if field is None:  # a quote never closed
            break
        fields += 1
        position = field.end()
        if not text.startswith(",", position):
            break
        position += 1
    return fields
