"""KServe's V1 protocol body: `{"instances": [...]}` (or `{"inputs": [...]}`) -> rows, and
`{"predictions": [...]}` back.

An instance is either a list of the feature values in signature order or an object of feature
name -> value; one request uses one kind. Objects get the same field-by-field check as
/batch-predict's records (every problem named by instance and feature); lists are held to the
tensor rules (`server.codecs.tensors`): the signature's width, finite numbers within range.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from server.codecs import json_text
from server.codecs.records import RecordCodec
from server.codecs.tensors import InputTensor, TensorLayout, refuse

INSTANCE_KEYS = ("instances", "inputs")


def decode_instances(body: bytes, records: RecordCodec, layout: TensorLayout, max_rows: int) -> np.ndarray:
    """The (N, width) float64 rows of a V1 predict body, checked."""
    payload = json_text.decode(body)
    if not isinstance(payload, dict):
        raise refuse("the body must be a JSON object holding `instances` (or `inputs`)")
    present = [key for key in INSTANCE_KEYS if key in payload]
    if len(present) != 1:
        raise refuse("the body must hold exactly one of `instances` and `inputs`")
    key = present[0]
    instances = payload[key]
    if not isinstance(instances, list) or not instances:
        raise refuse(f"`{key}` must be a non-empty array of instances")
    if all(type(item) is dict for item in instances):
        return records.batch_payload({"records": instances}, max_rows)
    if all(type(item) is list for item in instances):
        return _lists(instances, layout, key, max_rows)
    raise refuse(
        f"each of `{key}` must be an object of features or a list of {layout.width} values, all of one kind"
    )


def _lists(instances: list[Any], layout: TensorLayout, key: str, max_rows: int) -> np.ndarray:
    for index, item in enumerate(instances):
        if len(item) != layout.width:
            raise refuse(f"{key}[{index}] holds {len(item)} values; the model reads {layout.width}")
        for position, value in enumerate(item):
            if type(value) not in (int, float):
                raise refuse(f"{key}[{index}][{position}] must be a number")
    try:
        values = np.array(instances, dtype=np.float64).reshape(-1)
    except OverflowError:
        raise refuse(f"a value in `{key}` overflows a double") from None
    tensor = InputTensor(key, "FP64", (len(instances), layout.width), values)
    return layout.matrix(tensor, max_rows)


def encode_predictions(classes: np.ndarray) -> bytes:
    return orjson.dumps({"predictions": classes.tolist()})
