"""Response bodies of the monitoring routes: GET /model/drift and GET /predictions."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class FeatureDrift(BaseModel):
    name: str
    psi: float = Field(description="Population stability index against the training deciles.")
    ks: float = Field(description="Kolmogorov-Smirnov statistic against the training data.")


class ClassDrift(BaseModel):
    class_: str = Field(alias="class")
    live_share: float | None
    training_share: float
    ratio: float | None = Field(description="live_share / training_share.")


class VersionDrift(BaseModel):
    model: str | None
    version: str | None
    variant: str
    status: Literal["ok", "collecting", "no_reference_profile"]
    reason: str | None = None
    rows: int | None = Field(default=None, description="Logged rows in the live window.")
    features: list[FeatureDrift] | None = None
    classes: list[ClassDrift] | None = None


class DriftWindow(BaseModel):
    rows: int
    seconds: float


class DriftResponse(BaseModel):
    enabled: bool = Field(description="False without PREDICTION_LOG_URL: drift is computed from the log.")
    reason: str | None = None
    window: DriftWindow | None = None
    min_rows: int | None = None
    refreshed_at: datetime | None = None
    error: str | None = Field(default=None, description="Why the last refresh failed, while it does.")
    versions: list[VersionDrift]


class LoggedPrediction(BaseModel):
    id: int
    logged_at: datetime
    request_id: str
    row_index: int
    route: str
    model_name: str | None
    model_version: str | None
    variant: str
    features: dict[str, Any] | None
    predicted_class: str | None
    probabilities: dict[str, float | None] | None  # None: not a number (inputs far off the training range)
    latency_ms: float
    caller: str | None


class PredictionsPage(BaseModel):
    predictions: list[LoggedPrediction]
    next: str | None = Field(description="The next (older) page's URL, or null on the last page.")
