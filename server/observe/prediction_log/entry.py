"""What the hot path hands the prediction log for one answered request: references, no copies,
and nothing that imports the database layer (a server without the log never loads SQLAlchemy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from model_wrapper import Prediction


@dataclass(frozen=True, slots=True)
class Entry:
    """One answered request, as the hot path hands it over: references only, no copies."""

    logged_at: float
    request_id: str
    route: str
    model_name: str | None
    version: str | None
    variant: str
    feature_names: tuple[str, ...] | None
    class_names: tuple[str, ...] | None
    features: np.ndarray | None
    answer: Prediction | list[Any] | None
    latency_ms: float
    caller: str | None

    @property
    def rows(self) -> int:
        if self.features is not None:
            return len(self.features)
        return len(self.answer) if isinstance(self.answer, list) else 1
