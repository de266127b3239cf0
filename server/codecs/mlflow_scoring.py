"""MLflow's scoring server, as far as `/invocations` reuses it: its input parsers and its output
encoder, so that what we accept and answer is by construction what `mlflow models serve` does.

Two of these are private to MLflow (`_parse_json_data`, `_get_jsonable_obj`); this is the one
module that imports them, and `tests/server/test_library_adapters.py` fails loudly when an upgrade
moves or changes them.
"""

from __future__ import annotations

from typing import Any, TextIO

from mlflow.pyfunc.scoring_server import (
    _parse_json_data,
    parse_csv_input,
    parse_parquet_input,
    predictions_to_json,
)
from mlflow.utils.proto_json_utils import _get_jsonable_obj

__all__ = ["jsonable", "parse_csv_input", "parse_json_data", "parse_parquet_input", "write_predictions"]


def parse_json_data(document: dict[str, Any], metadata: Any, schema: Any) -> Any:
    """A JSON request body MLflow's way: `.data` (a frame, an array or a dict of them) and
    `.params`."""
    return _parse_json_data(document, metadata, schema)


def jsonable(output: Any) -> Any:
    """A model's output as MLflow turns it into JSON values (a frame into records)."""
    return _get_jsonable_obj(output, pandas_orient="records")


def write_predictions(output: Any, out: TextIO) -> None:
    """MLflow's `{"predictions": ...}` answer for a model's output."""
    predictions_to_json(output, out)
