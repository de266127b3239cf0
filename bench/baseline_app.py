"""The yardstick for /predict: a bare FastAPI route with the same 30-float pydantic body, no model.

Served by uvicorn with the same loop and HTTP parser as the server (`uvicorn bench.baseline_app:app`).
"""

from fastapi import FastAPI
from pydantic import create_model

from model_wrapper import FEATURE_NAMES

Record = create_model("Record", **{name: (float, ...) for name in FEATURE_NAMES})

app = FastAPI()


@app.post("/predict")
async def predict(record: Record) -> dict[str, object]:  # type: ignore[valid-type]
    return {"prediction": 0, "label": "malignant", "probabilities": {"malignant": 1.0, "benign": 0.0}}
