"""What the hot path hands the prediction log for one answered request: references, no copies,
and nothing that imports the database layer (a server without the log never loads SQLAlchemy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # the log's writer process runs without the model side (and MLflow) loaded
    import numpy as np

    from model_wrapper import Prediction


@dataclass(frozen=True, slots=True, eq=False)
class Source:
    """What every request one variant's model answers shares in the log: made once per model and
    variant, so that a request hands over one reference instead of five values."""

    model_name: str | None
    version: str | None
    variant: str
    feature_names: tuple[str, ...] | None
    class_names: tuple[str, ...] | None


class Entry(NamedTuple):
    """One answered request, as the hot path hands it over: references only, no copies. A named
    tuple: immutable once queued, and cheaper to make than a frozen dataclass."""

    logged_at: float
    request_id: str
    route: str
    source: Source
    features: np.ndarray | None
    answer: Prediction | list[Any] | None
    latency_ms: float
    caller: str | None

    @property
    def rows(self) -> int:
        if self.features is not None:
            return len(self.features)
        return len(self.answer) if isinstance(self.answer, list) else 1


Queued = tuple[int, Entry]  # the request's sequence number in its worker (its rows' keys), and it
