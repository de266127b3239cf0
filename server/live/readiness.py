"""Whether the served model answers: a prediction on its logged input example."""

from __future__ import annotations

import numpy as np

from server.live.loaded_model import LoadedModel


def answers_example(model: LoadedModel) -> None:
    """Predict the model's input example (one zero row without one); raise if it fails."""
    if model.runtime is not None:
        names = list(model.feature_names or ())
        rows = model.example.loc[:, names].to_numpy(dtype=np.float64) if model.example is not None else None
        model.runtime.score(rows if rows is not None else np.zeros((1, len(names))))
        return
    if model.example is None:
        raise RuntimeError("the model has no input example to check it with")
    model.pyfunc.predict(model.example)
