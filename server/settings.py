"""Every environment variable the server reads, typed, documented and validated once.

Nothing else in `server/` reads `os.environ`: objects receive the settings they need.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from server.edge import credentials

MIB = 1024 * 1024
_SECONDS_PER_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DRIFT_WINDOW = re.compile(
    r"(?P<rows>[1-9][0-9]{0,8})\s*/\s*(?P<amount>[0-9]{1,9}(?:\.[0-9]+)?)\s*(?P<unit>[smhd])"
)


class ServerSettings(BaseSettings):
    """The server's configuration; field names are the environment variables (any case)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", protected_namespaces=())

    environment: Literal["local", "staging", "production"] = Field(
        default="local",
        description="Where this runs. Outside `local`, placeholder secrets (`change-me…`) are refused.",
    )
    model_uri: str = Field(
        default="models:/breast-cancer-classifier@champion",
        description="MLflow model URI to serve (`models:/NAME@ALIAS`, `models:/NAME/VERSION`, "
        "`runs:/…`, a path). Empty: serve MODEL_PATH instead.",
    )
    model_name: str | None = Field(
        default=None,
        description="The name the Open Inference Protocol and KServe V1 paths serve the model under "
        "(`/v2/models/NAME/infer`); unset: the registered model's name (`model` for a local file).",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="Tracking server that resolves `models:/` URIs."
    )
    model_path: Path = Field(
        default=Path("artifacts/model/model.skops"),
        description="A local scikit-learn model file (.skops; .joblib only with ALLOW_PICKLED_MODELS), "
        "served only when MODEL_URI is empty, for work without a registry.",
    )
    allow_pickled_models: bool = Field(
        default=False,
        description="Load models whose files are unpickled (cloudpickled pyfunc models, pickled "
        "`mlflow.sklearn` models such as autolog's, a .joblib MODEL_PATH): unpickling runs code from "
        "the file. Off: only models that unpickle nothing load: this project's own wrapper, XGBoost "
        "and native LightGBM models, and skops-stored scikit-learn models and LGBMClassifiers, "
        "loaded with the server's own allowlist of types.",
    )
    api_host: str = Field(
        default="127.0.0.1", description="Interface the API binds to (containers set 0.0.0.0)."
    )
    api_port: int = Field(default=8000, ge=1, le=65535, description="Port the API listens on.")
    grpc_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Also serve the Open Inference Protocol over gRPC on this port (API_HOST's "
        "interface, every worker); unset: no gRPC.",
    )
    workers: int = Field(default=1, ge=1, le=64, description="Worker processes (`python -m server`).")
    reuse_port: bool = Field(
        default=True,
        description="With WORKERS > 1 on Linux, each worker listens on its own SO_REUSEPORT socket and "
        "the kernel spreads connections evenly; false: one shared socket, first worker to accept wins.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", description="Log level of the server's own loggers."
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="`json` writes one JSON object per log line."
    )
    access_log: bool = Field(
        default=False, description="Log every request at INFO (off: it costs throughput)."
    )
    max_batch_size: int = Field(
        default=1000, ge=1, description="Most records one /batch-predict request may carry."
    )
    max_body_bytes: int = Field(
        default=10 * MIB, ge=1024, description="Largest request body accepted; larger gets 413."
    )
    max_discard_bytes: int = Field(
        default=64 * MIB,
        ge=0,
        description="After an answer given before the request's body was read (413, 401, 429, ...), the "
        "most of that body read and thrown away (for up to 30 s) so the client can read the answer; "
        "a longer rest gets `Connection: close`.",
    )
    batch_max_rows: int = Field(
        default=1024,
        ge=1,
        description="Most rows one model call may merge from concurrent requests (1: never merge).",
    )
    batch_max_wait_ms: float = Field(
        default=0.0,
        ge=0,
        description="How long a batch waits for more requests before it runs. 0: it runs as soon as the "
        "model is free, and batches grow only from requests that arrive while a call runs.",
    )
    inline_budget_us: float = Field(
        default=250.0,
        ge=0,
        description="Model calls estimated under this many microseconds run on the event loop when the "
        "server is idle; longer ones, and everything while a call runs, go to the inference thread.",
    )
    model_load_timeout: float = Field(
        default=60.0, ge=0, description="Seconds to keep retrying the first model load before exiting."
    )
    mlflow_http_request_max_retries: int = Field(
        default=0,
        ge=0,
        description="Retries inside each MLflow client call. The server retries loads itself, with "
        "backoff bounded by MODEL_LOAD_TIMEOUT; MLflow's default (7, up to minutes) would not be.",
    )
    mlflow_http_request_timeout: float = Field(
        default=30.0, gt=0, description="Seconds before one MLflow client request gives up."
    )
    model_poll_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How often to ask the registry where MODEL_URI's alias points (0: never poll).",
    )
    challenger_alias: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_\-]{1,100}$",
        description="Serve a challenger beside the champion: the version MODEL_URI's registered model "
        "has at this alias (e.g. `challenger`), followed like the champion. Unset: no challenger.",
    )
    challenger_uri: str | None = Field(
        default=None,
        description="The challenger's model URI, when it is not MODEL_URI's model at CHALLENGER_ALIAS "
        "(another registered model's alias, or a pinned version). Setting it turns the challenger on.",
    )
    challenger_mode: Literal["split", "shadow"] = Field(
        default="split",
        description="`split`: the challenger answers CHALLENGER_PERCENT of requests, chosen by a hash "
        "of the routing key. `shadow`: the champion answers every request and the challenger scores "
        "a copy off the hot path, for comparison only.",
    )
    challenger_percent: float = Field(
        default=10.0,
        ge=0,
        le=100,
        description="In split mode, the share of routing keys (0-100, to 0.01) the challenger answers.",
    )
    shadow_queue_rows: int = Field(
        default=16384,
        ge=1,
        description="Rows waiting for the shadow challenger (per worker); a copy that does not fit is "
        "dropped (and counted), never the answer.",
    )
    allow_signature_change: bool = Field(
        default=False,
        description="Serve a new version whose input signature differs from the one being served.",
    )
    mlflow_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Shared secret of the MLflow webhook that calls POST /webhooks/mlflow; unset: "
        "the endpoint refuses every delivery.",
    )
    webhook_max_age_seconds: float = Field(
        default=300.0, gt=0, description="Webhook deliveries older (or further ahead) than this are refused."
    )
    webhook_redis_url: str | None = Field(
        default=None,
        description="Remember received webhook delivery ids in this Redis (redis://host:6379/0), so "
        "every replica refuses a replayed delivery; unreachable: deliveries get 503 until it is back.",
    )
    webhook_ledger_dir: Path | None = Field(
        default=None,
        description="Set by `python -m server` when WORKERS > 1: a folder where the workers record "
        "received webhook delivery ids, so a replay is refused by every worker. Leave unset.",
    )
    deployment_name: str = Field(
        default="default",
        pattern=r"^[A-Za-z0-9_.\-]{1,100}$",
        description="Names this deployment in the `serving.<name>` tag set on the live version.",
    )
    tag_live_version: bool = Field(
        default=True, description="Tag the version being served (and untag the one it replaced)."
    )
    reload_signal_path: Path | None = Field(
        default=None,
        description="Set by `python -m server` when WORKERS > 1: a file a worker touches after a webhook "
        "so the other workers check the registry at once. Leave unset.",
    )
    variant_policy_path: Path | None = Field(
        default=None,
        description="Set by `python -m server` when WORKERS > 1: a file where PUT /model/variants "
        "leaves the challenger's mode and percentage, which every worker follows. Leave unset.",
    )
    auth_enabled: bool = Field(
        default=False,
        description="Require an API key or JWT on everything but /health, /ping, the docs and webhooks.",
    )
    api_keys: SecretStr | None = Field(
        default=None,
        description="API keys as `name:sha256-hex-digest:scope+scope`, comma- or newline-separated; "
        "scopes are predict, admin, metrics. Only digests, never keys.",
    )
    api_keys_file: Path | None = Field(
        default=None, description="A file (a mounted Secret) with more API keys in the API_KEYS format."
    )
    jwt_algorithm: Literal["HS256", "RS256"] | None = Field(
        default=None, description="Accept JWT bearer tokens signed with this algorithm."
    )
    jwt_key: SecretStr | None = Field(
        default=None, description="The HS256 secret or the RS256 public key (PEM) that signs accepted JWTs."
    )
    jwt_key_file: Path | None = Field(default=None, description="JWT_KEY from a file (a mounted Secret).")
    jwt_issuer: str | None = Field(default=None, description="Required `iss` of accepted JWTs.")
    jwt_audience: str | None = Field(default=None, description="Required `aud` of accepted JWTs.")
    metrics_auth: bool = Field(
        default=False, description="With AUTH_ENABLED, /metrics requires a key with the metrics scope."
    )
    rate_limit_per_second: float = Field(
        default=0.0, ge=0, description="Requests per second per API key (or client address); 0: no limit."
    )
    rate_limit_burst: int = Field(
        default=0, ge=0, description="Token bucket size: requests allowed at once (0: one second's worth)."
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1,::1",
        description="Comma-separated addresses (or `*`) of proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are trusted: the client address they name is what rate limits and "
        "failed-credential limits count by.",
    )
    auth_failures_per_minute: int = Field(
        default=30,
        ge=0,
        description="With AUTH_ENABLED, failed credentials allowed per client address per minute (as a "
        "burst, refilled evenly); beyond them the address gets 429 until it may try again. Shared "
        "through RATE_LIMIT_REDIS_URL when set. 0: no limit.",
    )
    rate_limit_redis_url: str | None = Field(
        default=None,
        description="Share rate limits across replicas through this Redis (redis://host:6379/0).",
    )
    max_concurrent_requests: int = Field(
        default=512, ge=1, description="Prediction requests in progress at once; more get 503 at once."
    )
    request_timeout_seconds: float = Field(
        default=30.0, gt=0, description="A prediction request still unanswered after this gets 504."
    )
    cors_origins: str = Field(
        default="", description="Comma-separated origins allowed by CORS; empty: CORS off."
    )
    docs_enabled: bool = Field(default=True, description="Serve /docs, /redoc and /openapi.json.")
    prediction_log_url: SecretStr | None = Field(
        default=None,
        description="Write every prediction (sampled by PREDICTION_LOG_SAMPLE) to the `predictions` table "
        "of this SQLAlchemy database: `sqlite:///path.db`, or `postgresql://user:password@host/db` "
        "(psycopg). Unset: no prediction log, and no drift (it is computed from the log).",
    )
    prediction_log_sample: float = Field(
        default=1.0, ge=0, le=1, description="The share of prediction requests written to the log (0-1)."
    )
    prediction_log_queue_rows: int = Field(
        default=100_000,
        ge=1,
        description="Rows waiting to be written (per worker) while the database is slow or down; "
        "rows beyond it are dropped and counted (`prediction_log_dropped_total`), never a request.",
    )
    prediction_log_migrate: bool = Field(
        default=True,
        description="At start, bring the prediction log's schema to this version (Alembic). False: "
        "refuse to start unless it is already current (`python -m server migrate` migrates it).",
    )
    prediction_log_retention_days: float = Field(
        default=30.0,
        ge=0,
        description="Rows older than this many days are deleted (in batches, hourly). 0: kept forever.",
    )
    drift_window: str = Field(
        default="10000/1h",
        description="The live window drift is computed over, `ROWS/DURATION` (`10000/1h`: the latest "
        "10,000 logged rows of the last hour, per served version; durations in s, m, h or d).",
    )
    drift_min_rows: int = Field(
        default=200, ge=1, description="Rows a version's window needs before drift numbers are given."
    )
    prometheus_multiproc_dir: Path | None = Field(
        default=None,
        description="Set by `python -m server` to a fresh folder when WORKERS > 1, so metrics "
        "add up across workers. Leave unset.",
    )

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> ServerSettings:
        secret = self.mlflow_webhook_secret
        if (
            self.environment != "local"
            and secret is not None
            and secret.get_secret_value().strip().startswith(credentials.PLACEHOLDER_PREFIX)
        ):
            raise ValueError(
                "MLFLOW_WEBHOOK_SECRET still holds its placeholder; "
                f"set a real secret (ENVIRONMENT={self.environment})"
            )
        return self

    @model_validator(mode="after")
    def _auth_has_credentials(self) -> ServerSettings:
        if self.auth_enabled and not (self.api_keys or self.api_keys_file or self.jwt_algorithm):
            raise ValueError("AUTH_ENABLED needs API_KEYS, API_KEYS_FILE or JWT_ALGORITHM")
        if self.jwt_algorithm and not (self.jwt_key or self.jwt_key_file):
            raise ValueError("JWT_ALGORITHM needs JWT_KEY or JWT_KEY_FILE")
        self.vetted_credentials()  # unusable or placeholder credentials stop the server here, at start
        return self

    @property
    def challenger_model_uri(self) -> str | None:
        """Where the challenger comes from: CHALLENGER_URI, else MODEL_URI's registered model at
        CHALLENGER_ALIAS; None when no challenger is configured."""
        if self.challenger_uri:
            return self.challenger_uri
        if not self.challenger_alias:
            return None
        name = registered_model_name(self.model_uri)
        return f"models:/{name}@{self.challenger_alias}" if name else None

    @model_validator(mode="after")
    def _challenger_has_a_source(self) -> ServerSettings:
        if self.challenger_alias and not self.challenger_uri and not registered_model_name(self.model_uri):
            raise ValueError(
                "CHALLENGER_ALIAS needs MODEL_URI to name a registered model (models:/NAME@ALIAS or "
                "models:/NAME/VERSION), or CHALLENGER_URI"
            )
        if self.challenger_model_uri is not None and self.challenger_model_uri == self.model_uri:
            raise ValueError(
                f"the challenger ({self.challenger_model_uri}) is the champion's MODEL_URI itself"
            )
        return self

    @field_validator("drift_window")
    @classmethod
    def _drift_window_shape(cls, value: str) -> str:
        match = _DRIFT_WINDOW.fullmatch(value.strip())
        if match is None or float(match["amount"]) <= 0:
            raise ValueError(
                "expected ROWS/DURATION with both above zero, e.g. 10000/1h (durations in s, m, h or d)"
            )
        return f"{match['rows']}/{match['amount']}{match['unit']}"

    def vetted_credentials(self) -> credentials.Credentials:
        """The API keys and JWT key these settings name, read (files included) and vetted."""
        return credentials.load(
            environment=self.environment,
            api_keys=self.api_keys.get_secret_value() if self.api_keys else None,
            api_keys_file=self.api_keys_file,
            jwt_algorithm=self.jwt_algorithm,
            jwt_key=self.jwt_key.get_secret_value() if self.jwt_key else None,
            jwt_key_file=self.jwt_key_file,
        )

    @property
    def drift_window_rows(self) -> int:
        return int(self.drift_window.split("/", 1)[0])

    @property
    def drift_window_seconds(self) -> float:
        duration = self.drift_window.split("/", 1)[1].strip()
        return float(duration[:-1]) * _SECONDS_PER_UNIT[duration[-1]]

    def prediction_log_dsn(self) -> str | None:
        """PREDICTION_LOG_URL for SQLAlchemy: a bare `postgresql://` means psycopg (3), the driver
        installed with the server, not SQLAlchemy's default psycopg2."""
        if self.prediction_log_url is None:
            return None
        url = self.prediction_log_url.get_secret_value().strip()
        for bare in ("postgresql://", "postgres://"):
            if url.startswith(bare):
                return "postgresql+psycopg://" + url.removeprefix(bare)
        return url

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @field_validator("prediction_log_url", mode="before")
    @classmethod
    def _blank_url_is_unset(cls, value: object) -> object:
        """`PREDICTION_LOG_URL=` switches off the log `make run` turns on."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("challenger_alias", "challenger_uri", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """`CHALLENGER_ALIAS=` switches off a default set around the server (`make run`'s)."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


def registered_model_name(uri: str) -> str | None:
    """NAME in `models:/NAME@ALIAS` or `models:/NAME/VERSION`; None for any other URI."""
    if not uri.startswith("models:/"):
        return None
    name = uri.removeprefix("models:/").split("@", 1)[0].split("/", 1)[0]
    return name or None


def describe_invalid_settings(error: ValidationError) -> str:
    """A refused configuration on one line: each problem's variable and reason, never its value
    (pydantic's own text quotes the input, which may be a secret)."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]).upper()
        reason = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {reason}" if where else reason)
    return "; ".join(problems)
