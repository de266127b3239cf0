"""Running the model: its runtime (micro-batched), the generic pyfunc path, and MLflow's
protocol path.

Every model call goes through here, so this is where calls are counted by size and where
predicted classes are counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from starlette.concurrency import run_in_threadpool

from model_wrapper import Prediction
from server.codecs.limits import MAX_PROBLEMS, too_many_rows
from server.codecs.mlflow_protocol import InvocationCodec, PendingRequest, from_mlflow, scrubbed
from server.codecs.mlflow_scoring import jsonable
from server.codecs.redaction import ClientText
from server.errors import InvalidInput, Problem, ServingError
from server.inference.batching import AdaptiveBatcher
from server.live.loaded_model import LoadedModel
from server.observe import metrics
from server.runtimes.base import ClassifierRuntime


class ModelFailed(ServingError):
    """The model raised on input that passed validation."""

    status_code = 400
    error_code = "MODEL_ERROR"


class Inference:
    """Turns validated rows into predictions with whichever path the model supports."""

    def __init__(self, batcher: AdaptiveBatcher) -> None:
        self._batcher = batcher

    async def predict(
        self, model: LoadedModel, features: np.ndarray, variant: tuple[str, str]
    ) -> Prediction | list[Any]:
        """Rows in signature order -> a `Prediction` (the model's runtime) or the pyfunc's per-row
        output (MLflow's generic path). `variant` labels the predicted classes in the metrics."""
        if model.runtime is not None:
            return await self.score(model.runtime, features, variant)
        metrics.record_model_call(len(features))
        rows = await run_in_threadpool(generic_rows, model, features)
        metrics.record_request_rows(len(rows))
        return rows

    async def score(
        self, runtime: ClassifierRuntime, features: np.ndarray, variant: tuple[str, str]
    ) -> Prediction:
        """Rows in signature order, scored by `runtime` (micro-batched where it allows). A model that
        raises on rows that passed validation (a scaler overflowing on 1e308, say) is the client's
        input meeting the model's limits: `ModelFailed`, a 400, as on the generic path."""
        try:
            prediction = await self._batcher.predict(runtime, features)
        except Exception as error:  # noqa: BLE001 - a third-party model's failure, answered as such
            raise ModelFailed(f"the model failed on this input: {type(error).__name__}") from None
        metrics.record_predictions(prediction.labels, variant)
        return prediction

    async def predict_mlflow(
        self,
        model: LoadedModel,
        codec: InvocationCodec,
        pending: PendingRequest,
        max_rows: int,
        *,
        keep_rows: bool = False,
    ) -> MlflowAnswer:
        """The body's limits, MLflow's parsers and `PyFuncModel.predict`, all off the event loop;
        with `keep_rows` (for the prediction log), the rows and classes too, where they can be had."""
        return await run_in_threadpool(_parse_and_predict, model, codec, pending, max_rows, keep_rows)


def refuse_unscorable(prediction: Prediction, *, single: bool) -> None:
    """Finite inputs far outside the training range can make the model's arithmetic overflow into
    probabilities that are not numbers; the strict routes say which records, rather than answer."""
    finite = np.isfinite(prediction.probabilities).all(axis=1)
    if finite.all():
        return
    problem = "the model cannot score this record: its values lie too far outside the range it was trained on"
    bad = np.flatnonzero(~finite).tolist()
    problems = [Problem(problem, index=None if single else int(i)) for i in bad]
    raise InvalidInput.from_problems(problems[:MAX_PROBLEMS], total=len(problems))


def check_row_count(rows: int, max_rows: int) -> None:
    """MAX_BATCH_SIZE holds for every way rows arrive, CSV and Parquet included."""
    if rows > max_rows:
        raise too_many_rows(rows, max_rows)


def _row_count(data: Any) -> int:
    """Rows in what MLflow's parsers produced: a frame, a list, an array (0-d: one row), or a dict
    of named tensors, counted by the first one."""
    if isinstance(data, pd.DataFrame):
        return len(data)
    if isinstance(data, np.ndarray):
        return int(data.shape[0]) if data.ndim else 1
    if isinstance(data, list):
        return len(data)
    if isinstance(data, dict):
        first = next(iter(data.values()), None)
        return _row_count(first) if isinstance(first, (list, np.ndarray)) else 1
    return 1


@dataclass(frozen=True, slots=True)
class MlflowAnswer:
    """What MLflow's path answered: the body, and (when asked for) the rows it read in signature
    order and each row's predicted class, None where the request or the output has no such shape."""

    body: bytes
    features: np.ndarray | None = None
    classes: list[str] | None = None


def _parse_and_predict(
    model: LoadedModel, codec: InvocationCodec, pending: PendingRequest, max_rows: int, keep_rows: bool
) -> MlflowAnswer:
    request = codec.parse(pending, max_rows)
    rows = _row_count(request.data)
    check_row_count(rows, max_rows)
    metrics.record_model_call(rows)
    if not keep_rows:
        return MlflowAnswer(codec.predict(request))
    body, raw = codec.predict_raw(request)
    return MlflowAnswer(body, _signature_rows(model, request.data), _classes(raw, rows))


def _signature_rows(model: LoadedModel, data: Any) -> np.ndarray | None:
    """A frame's columns in signature order as float64 rows, when it has them all (CSV, Parquet,
    `dataframe_split` / `dataframe_records` read by MLflow); None for tensors and other shapes."""
    names = list(model.feature_names or ())
    if not names or not isinstance(data, pd.DataFrame) or not set(names) <= set(data.columns):
        return None
    try:
        return data.loc[:, names].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        return None


def _classes(raw: Any, rows: int) -> list[str] | None:
    """Each row's predicted class from a pyfunc's output: its `label` (this project's records) or
    `prediction` column, or a one-dimensional output; None for any other shape."""
    if isinstance(raw, pd.DataFrame):
        column = next((c for c in ("label", "prediction") if c in raw.columns), None)
        values = raw[column].tolist() if column is not None else None
    elif isinstance(raw, (pd.Series, np.ndarray)) and np.ndim(raw) == 1:
        values = list(raw)
    elif isinstance(raw, list) and all(not isinstance(v, (list, dict)) for v in raw):
        values = raw
    else:
        values = None
    return [str(v) for v in values] if values is not None and len(values) == rows else None


def generic_rows(model: LoadedModel, features: np.ndarray) -> list[Any]:
    """MLflow's generic pyfunc path: the model's own `predict` on a frame of checked rows."""
    frame = pd.DataFrame(features, columns=list(model.feature_names or ()))
    try:
        output = model.pyfunc.predict(frame)
    except MlflowException as error:
        # The frame holds only checked numbers, but MLflow's message may still quote them.
        client = ClientText.of_strings(map(repr, np.unique(features).tolist()))
        raise scrubbed(from_mlflow(error), client, frozenset(frame.columns)) from None
    except Exception as error:  # noqa: BLE001 - a third-party model's failure, answered as such
        raise ModelFailed(f"the model failed on this input: {type(error).__name__}") from None
    rows = jsonable(output)
    return rows if isinstance(rows, list) else [rows]
