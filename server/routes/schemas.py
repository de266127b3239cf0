"""Response shapes, for the OpenAPI document and the low-traffic JSON endpoints.

Hot routes encode with orjson and never re-validate; these models describe what they send.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ProblemBody(BaseModel):
    index: int | None = Field(default=None, description="Record index in a batch.")
    field: str | None = Field(default=None, description="The offending field.")
    message: str


class ErrorBody(BaseModel):
    """Every error answer has this shape (MLflow's `error_code` and `message`, and more)."""

    error_code: str = Field(examples=["INVALID_INPUT"])
    message: str
    details: list[ProblemBody] | None = None
    request_id: str | None = None


class OpenInferenceError(BaseModel):
    """Errors on the Open Inference Protocol's and KServe V1's paths: that protocol's shape."""

    error: str = Field(examples=["input feature_4, row 2: must be a finite number"])


class PredictResponse(BaseModel):
    prediction: Any = Field(description="The predicted class value.", examples=[0])
    label: str | None = Field(default=None, description="The predicted class name.", examples=["malignant"])
    probabilities: dict[str, float] | None = Field(default=None, description="Probability of each class.")
    model_version: str | None = None


class BatchItem(BaseModel):
    prediction: Any
    label: str | None = None
    probabilities: dict[str, float] | None = None


class BatchPredictResponse(BaseModel):
    predictions: list[BatchItem]
    count: int
    model_version: str | None = None


class InvocationsResponse(BaseModel):
    predictions: list[dict[str, Any]] = Field(
        description="One record per input row: prediction, label, probability_<class>."
    )


class ReloadErrorBody(BaseModel):
    version: str | None
    reason: str
    at: datetime


class RegistryBody(BaseModel):
    following: str | None = Field(description="The alias URI followed, or null when MODEL_URI names none.")
    reachable: bool
    last_check: datetime | None
    last_error: str | None


class HealthResponse(BaseModel):
    """Liveness only: open to anyone, so it says nothing about where the model comes from or what
    went wrong (that is in /model/metadata, behind the `predict` scope)."""

    status: str
    model_loaded: bool
    model_version: str | None
    uptime_seconds: float


class ReadinessResponse(BaseModel):
    status: str
    model_version: str | None = None
    reason: str | None = None


class FeatureBody(BaseModel):
    name: str
    type: str
    required: bool


class FeaturesResponse(BaseModel):
    count: int
    features: list[FeatureBody]


class ClassBody(BaseModel):
    value: int | float | str = Field(description="The class value the model predicts.")
    name: str = Field(description="Its name: from the model's metadata, else the value as text.")


class ModelMetadata(BaseModel):
    name: str | None
    version: str | None
    alias: str | None
    run_id: str | None
    model_uri: str
    source_uri: str | None
    loaded_at: datetime
    metrics: dict[str, float]
    classes: list[ClassBody] | None
    feature_count: int | None
    signature: dict[str, Any] | None
    runtime: str = Field(
        description="What scores the model: wrapper, sklearn, xgboost, lightgbm, "
        "or pyfunc (MLflow's generic path)."
    )
    fast_path: bool = Field(description="Whether a runtime scores it natively (runtime is not pyfunc).")
    registry: RegistryBody
    last_reload_error: ReloadErrorBody | None


class ReloadResponse(BaseModel):
    outcome: str = Field(description="unchanged, swapped, refused or failed")
    version: str | None
    previous: str | None
    reason: str | None = None
    seconds: float = 0.0


class WebhookResponse(BaseModel):
    status: str = Field(description="accepted (a check is under way) or ignored")
    reason: str


class VersionBody(BaseModel):
    version: str
    aliases: list[str]
    status: str | None
    run_id: str | None
    created_at: int | None = Field(description="Milliseconds since the epoch, as MLflow keeps it.")
    tags: dict[str, str]
    live: bool = Field(description="Whether this server is serving this version.")


class VersionsResponse(BaseModel):
    name: str
    live_version: str | None
    versions: list[VersionBody]


class BucketBody(BaseModel):
    le: float | Literal["+Inf"] = Field(description="Upper bound; `+Inf` for the last bucket.")
    count: int = Field(description="Observations at or below the bound (cumulative, as Prometheus).")


class VariantStatsBody(BaseModel):
    requests: int = Field(description="Requests this version answered (or failed) as this variant.")
    errors: int
    rows: int = Field(description="Rows it predicted (a shadow challenger's copies included).")
    classes: dict[str, int] = Field(description="Rows by predicted class name.")
    latency_seconds: dict[str, float | None] = Field(description="p50, p90, p99 of request latency.")
    latency_buckets: list[BucketBody]


class VariantBody(BaseModel):
    variant: Literal["champion", "challenger"]
    state: Literal["serving", "absent", "refused"] = Field(
        description="`absent`: no version to serve (the alias is not set, or none loaded yet); "
        "`refused`: its last version failed to load or failed the gate, so the champion answers everything."
    )
    model_uri: str
    name: str | None
    version: str | None
    alias: str | None
    run_id: str | None
    loaded_at: datetime | None
    runtime: str | None
    last_reload_error: ReloadErrorBody | None
    stats: VariantStatsBody | None = Field(description="Since its version was loaded; null when absent.")


class ShadowBody(BaseModel):
    version: str = Field(description="The challenger version these numbers are about.")
    requests: dict[str, int] = Field(description="Copies by outcome: scored, dropped, failed, skipped.")
    waiting: int = Field(description="Copies in this process's queue right now.")
    rows_compared: int
    same_class: int
    agreement: float | None = Field(description="same_class / rows_compared; null before any row.")
    probability_difference: dict[str, float | None] = Field(
        description="p50, p90, p99 of each row's largest absolute difference in class probability."
    )
    probability_difference_buckets: list[BucketBody]


class PolicyBody(BaseModel):
    mode: Literal["split", "shadow"]
    percent: float


class VariantsResponse(BaseModel):
    mode: Literal["split", "shadow", "off"] = Field(description="`off`: no challenger is configured.")
    percent: float = Field(description="The challenger's share of routing keys in split mode.")
    configured: PolicyBody | None = Field(
        description="CHALLENGER_MODE and CHALLENGER_PERCENT, which a restart goes back to."
    )
    variants: list[VariantBody]
    shadow: ShadowBody | None


class VariantsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["split", "shadow"] | None = None
    percent: float | None = Field(default=None, ge=0, le=100)
