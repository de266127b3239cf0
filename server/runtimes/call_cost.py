"""What one model call costs on this machine, measured once when the model is loaded.

The batcher uses it to decide whether a call is cheap enough to run on the event loop. It is
measured before the model serves, so other requests never inflate it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CALIBRATION_ROWS = 64
REPEATS = 5


@dataclass(frozen=True)
class CallCost:
    """A model's cost line: seconds per call plus seconds per row."""

    per_call: float
    per_row: float

    def estimate(self, rows: int) -> float:
        return self.per_call + self.per_row * rows


def calibrate(
    score: Callable[[np.ndarray], object], sample: np.ndarray, clock: Callable[[], float] = time.perf_counter
) -> CallCost:
    """Time one row and `CALIBRATION_ROWS` rows of `sample` (a row the model answers: its input
    example's), best of `REPEATS` after a warm-up call."""

    def best(rows: int) -> float:
        features = np.repeat(sample[:1], rows, axis=0)
        score(features)
        timings = []
        for _ in range(REPEATS):
            start = clock()
            score(features)
            timings.append(clock() - start)
        return min(timings)

    one, many = best(1), best(CALIBRATION_ROWS)
    per_row = max(0.0, (many - one) / (CALIBRATION_ROWS - 1))
    return CallCost(per_call=max(0.0, one - per_row), per_row=per_row)
