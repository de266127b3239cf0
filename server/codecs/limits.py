"""The bounds on what one request body may make the server do, all in one place.

`MAX_BODY_BYTES` bounds what a client sends, `MAX_BATCH_SIZE` how many rows it asks for. Neither
bounds the work a body can cost on its own: one JSON object with 700,000 keys, JSON nested
thousands deep, or a 43 KB Parquet file that decompresses to 20 million rows all fit in 10 MiB.
These constants bound that work, and each refusal names the limit it hit (the README's errors
table and docs/security.md list them). They are fixed, not settings: no valid request for any
model this server serves comes near them.

Every check against them is O(1) on the bodies the fast readers take, or runs only where a
body has already left them (the detailed checks, MLflow's parsers, error messages).
"""

from __future__ import annotations

from server.errors import InvalidInput, Problem

# Keys in one JSON object (a record, `inputs` as columns, `params`) and columns in one row
# (`dataframe_split`, CSV, Parquet). The model has 30 features; /invocations also takes columns
# MLflow would drop, up to this many.
MAX_COLUMNS = 1024

# Levels of nesting in a JSON document that MLflow's parsers read (/invocations' general path).
# Tensors have at most 64 dimensions in numpy; MLflow's parsers recurse once or more per level.
MAX_JSON_DEPTH = 64

# Problems named in one 422 answer; collecting them stops there (the rest are only counted).
MAX_PROBLEMS = 50

# What a Parquet body may expand to when decoded: pages decompressed, values materialized
# (dictionary-encoded strings at full length). 1,000 rows of 1,024 doubles are 8 MiB.
MAX_DECODED_BYTES = 32 * 1024 * 1024

# Pages (and column chunks) in one Parquet body: each page header is read in Python, so their
# number bounds that work. A 1,000-row file has one or two per column.
MAX_PARQUET_PAGES = 32 * MAX_COLUMNS

# Bodies the fast readers decline are checked field by field in Python; above this size that
# runs on a worker thread, so one large bad body cannot stall every other request.
INLINE_CHECK_MAX_BYTES = 64 * 1024

# The compiled fast readers run on the event loop for bodies up to this size (1,000 plain
# records of 30 features are about 0.6 MiB); a larger body, which only junk can make, is read
# on a worker thread from the start (parsing 10 MiB takes tens of milliseconds even in C).
INLINE_READ_MAX_BYTES = 1024 * 1024


def max_values(max_rows: int) -> int:
    """Values (leaf cells, nested ones included) one Parquet body may hold."""
    return max_rows * MAX_COLUMNS


def too_many_rows(rows: int, max_rows: int, *, at_least: bool = False) -> InvalidInput:
    """MAX_BATCH_SIZE holds for every way rows arrive; `at_least` when counting stopped early."""
    held = f"more than {max_rows}" if at_least else str(rows)
    return InvalidInput.from_problems(
        [Problem(f"the request holds {held} rows; at most {max_rows} per request")]
    )


def too_many_columns(columns: int, *, at_least: bool = False) -> InvalidInput:
    held = f"more than {MAX_COLUMNS}" if at_least else str(columns)
    return InvalidInput.from_problems(
        [Problem(f"the request holds {held} columns; at most {MAX_COLUMNS} per request")]
    )
