"""Everything a request may touch, built once from the settings, and closed once at shutdown."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from server.edge.auth import Authenticator, build_authenticator
from server.edge.in_flight import InFlight
from server.edge.rate_limit import FailedCredentialLimiter, Limiter, LocalTokenBuckets, RedisTokenBuckets
from server.inference.batching import AdaptiveBatcher
from server.inference.open_inference import OpenInference
from server.inference.predictor import Inference
from server.inference.shadow import ShadowScorer
from server.inference.split_policy import SplitPolicy, SplitPolicyHolder
from server.inference.variants import VariantRouter
from server.live.delivery_ledger import (
    DeliveryLedger,
    FolderLedger,
    MemoryLedger,
    RedisLedger,
    retention_seconds,
)
from server.live.follower import AliasFollower
from server.live.loading import ModelLoader
from server.live.model_store import CHALLENGER, ModelStore
from server.live.reloader import Reloader
from server.live.webhooks import DeliveryVerifier
from server.observe import metrics
from server.settings import ServerSettings

if TYPE_CHECKING:  # the database layer is imported only when PREDICTION_LOG_URL is set
    from server.observe.drift import DriftMonitor, ServedVersion
    from server.observe.prediction_log.writer import PredictionLog

# Seconds a stopping server spends writing the prediction log's queue before counting it dropped.
LOG_FLUSH_SECONDS = 5.0


@dataclass
class Challenger:
    """The second variant: its store, and what keeps it on its alias."""

    uri: str
    store: ModelStore
    reloader: Reloader
    follower: AliasFollower
    shadow: ShadowScorer


@dataclass
class Monitoring:
    """The prediction log, drift computed from it, and their threads (database calls never run on
    the event loop, and drift's reads never wait behind the log's writes)."""

    log: PredictionLog
    drift: DriftMonitor
    log_thread: ThreadPoolExecutor
    drift_thread: ThreadPoolExecutor

    async def close(self) -> None:
        await self.log.flush(LOG_FLUSH_SECONDS)
        self.drift_thread.shutdown(wait=True, cancel_futures=True)
        self.log_thread.shutdown(wait=True, cancel_futures=True)
        self.log.engine.dispose()


@dataclass
class Services:
    """The served models and what serves them: inference, variants, reloads, metrics, access
    control. `store`, `reloader` and `follower` are the champion's."""

    settings: ServerSettings
    store: ModelStore
    loader: ModelLoader
    inference: Inference
    open_inference: OpenInference
    exposition: metrics.Exposition
    reloader: Reloader
    follower: AliasFollower
    challenger: Challenger | None
    router: VariantRouter
    monitoring: Monitoring | None
    webhook_verifier: DeliveryVerifier | None
    authenticator: Authenticator | None
    limiter: Limiter | None
    failed_credentials: FailedCredentialLimiter | None
    in_flight: InFlight
    inference_thread: ThreadPoolExecutor
    loader_thread: ThreadPoolExecutor
    challenger_loader_thread: ThreadPoolExecutor
    shadow_thread: ThreadPoolExecutor
    started_at: float

    @property
    def followers(self) -> tuple[AliasFollower, ...]:
        """Every alias followed: the champion's, and the challenger's when there is one."""
        if self.challenger is None:
            return (self.follower,)
        return (self.follower, self.challenger.follower)

    @property
    def prediction_log(self) -> PredictionLog | None:
        return None if self.monitoring is None else self.monitoring.log

    async def close(self) -> None:
        """Stop the threads (waiting for the model call in progress), write what the prediction log
        holds, and close the Redis connections."""
        if self.monitoring is not None:
            await self.monitoring.close()
        self.loader_thread.shutdown(wait=False, cancel_futures=True)
        self.challenger_loader_thread.shutdown(wait=False, cancel_futures=True)
        self.inference_thread.shutdown(wait=True, cancel_futures=True)
        # The shadow's call in progress finishes before the challenger's files go.
        self.shadow_thread.shutdown(wait=True, cancel_futures=True)
        if self.challenger is not None:
            self.challenger.store.close()
        if isinstance(self.limiter, RedisTokenBuckets):
            await self.limiter.close()
        if self.failed_credentials is not None:
            await self.failed_credentials.close()
        if self.webhook_verifier is not None:
            await self.webhook_verifier.close()


def build_services(settings: ServerSettings, store: ModelStore) -> Services:
    started_at = time.time()
    inference_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
    loader_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader")
    shadow_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
    # The challenger loads on a thread of its own: a slow challenger download never delays a
    # champion promotion or rollback.
    challenger_loader_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="challenger-loader")
    in_flight = InFlight()
    batcher = AdaptiveBatcher(
        inference_thread,
        in_flight=in_flight,
        max_rows=settings.batch_max_rows,
        max_wait=settings.batch_max_wait_ms / 1000,
        inline_budget=settings.inline_budget_us / 1e6,
    )
    loader = ModelLoader(settings.mlflow_tracking_uri)
    reloader = Reloader(
        store,
        loader,
        loader_thread,
        allow_signature_change=settings.allow_signature_change,
        deployment_name=settings.deployment_name,
        tag_live_version=settings.tag_live_version,
    )
    follower = _follower(settings, settings.model_uri, reloader, loader_thread, optional=False)
    challenger = _challenger(settings, store, loader, challenger_loader_thread, shadow_thread)
    policy = SplitPolicyHolder(
        SplitPolicy(settings.challenger_mode, settings.challenger_percent), settings.variant_policy_path
    )
    secret = settings.mlflow_webhook_secret
    monitoring = _monitoring(settings, store, challenger)
    inference = Inference(batcher)
    router = VariantRouter(
        store,
        challenger.store if challenger else None,
        policy,
        challenger.shadow if challenger else None,
    )
    return Services(
        settings=settings,
        store=store,
        loader=loader,
        inference=inference,
        open_inference=OpenInference(router, inference, settings.model_name, settings.max_batch_size),
        exposition=metrics.Exposition(started_at, settings.prometheus_multiproc_dir),
        reloader=reloader,
        follower=follower,
        challenger=challenger,
        router=router,
        monitoring=monitoring,
        webhook_verifier=(
            DeliveryVerifier(secret.get_secret_value(), settings.webhook_max_age_seconds, _ledger(settings))
            if secret
            else None
        ),
        authenticator=_authenticator(settings) if settings.auth_enabled else None,
        limiter=_limiter(settings),
        failed_credentials=_failed_credentials(settings),
        in_flight=in_flight,
        inference_thread=inference_thread,
        loader_thread=loader_thread,
        challenger_loader_thread=challenger_loader_thread,
        shadow_thread=shadow_thread,
        started_at=started_at,
    )


def _challenger(
    settings: ServerSettings,
    champion: ModelStore,
    loader: ModelLoader,
    loader_thread: ThreadPoolExecutor,
    shadow_thread: ThreadPoolExecutor,
) -> Challenger | None:
    """The challenger, when one is configured: followed like the champion, gated against the
    champion's signature whatever ALLOW_SIGNATURE_CHANGE says (both answer the same requests, and
    the shadow scores the champion's rows), loaded after start-up."""
    uri = settings.challenger_model_uri
    if uri is None:
        return None
    store = ModelStore(variant=CHALLENGER)
    reloader = Reloader(
        store,
        loader,
        loader_thread,
        allow_signature_change=False,
        deployment_name=settings.deployment_name,
        tag_live_version=settings.tag_live_version,
        contract=champion.peek,
    )
    follower = _follower(settings, uri, reloader, loader_thread, optional=True)
    return Challenger(
        uri, store, reloader, follower, ShadowScorer(store, shadow_thread, settings.shadow_queue_rows)
    )


def _monitoring(
    settings: ServerSettings, store: ModelStore, challenger: Challenger | None
) -> Monitoring | None:
    """The prediction log and drift, when PREDICTION_LOG_URL is set."""
    url = settings.prediction_log_dsn()
    if url is None:
        return None
    from server.observe.drift import DriftMonitor
    from server.observe.prediction_log.database import open_engine
    from server.observe.prediction_log.writer import PredictionLog

    engine = open_engine(url)
    log_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prediction-log")
    drift_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drift")
    stores = [store] if challenger is None else [store, challenger.store]
    log = PredictionLog(
        engine,
        log_thread,
        queue_rows=settings.prediction_log_queue_rows,
        sample=settings.prediction_log_sample,
        retention_days=settings.prediction_log_retention_days,
        migrate=settings.prediction_log_migrate,
        log_level=settings.log_level,
        log_format=settings.log_format,
    )
    drift = DriftMonitor(
        engine,
        drift_thread,
        lambda: _served_versions(stores),
        max_rows=settings.drift_window_rows,
        max_seconds=settings.drift_window_seconds,
        min_rows=settings.drift_min_rows,
    )
    return Monitoring(log, drift, log_thread, drift_thread)


def _served_versions(stores: list[ModelStore]) -> list[ServedVersion]:
    """The variants serving now, each with its model's reference profile."""
    from server.observe.drift import ServedVersion

    served = []
    for store in stores:
        model = store.peek()
        if model is not None:
            source = model.source
            served.append(
                ServedVersion(
                    source.name,
                    source.version,
                    store.variant,
                    model.reference_profile,
                    model.reference_problem,
                )
            )
    return served


def _follower(
    settings: ServerSettings, uri: str, reloader: Reloader, thread: ThreadPoolExecutor, *, optional: bool
) -> AliasFollower:
    """What keeps one variant on its alias: polling every MODEL_POLL_SECONDS, and the workers'
    shared signal file for webhooks."""
    return AliasFollower(
        uri,
        reloader.store,
        reloader.loader,
        reloader,
        thread,
        poll_seconds=settings.model_poll_seconds,
        signal_path=settings.reload_signal_path,
        optional=optional,
    )


def _ledger(settings: ServerSettings) -> DeliveryLedger:
    """Where received webhook delivery ids are kept: Redis (every replica), else the workers' shared
    folder (every worker of this server), else this process's memory."""
    retention = retention_seconds(settings.webhook_max_age_seconds)
    if settings.webhook_redis_url:
        prefix = f"registry-serve:webhook-delivery:{settings.deployment_name}:"
        return RedisLedger(settings.webhook_redis_url, retention, prefix)
    if settings.webhook_ledger_dir is not None:
        return FolderLedger(settings.webhook_ledger_dir, retention)
    return MemoryLedger(retention)


def _authenticator(settings: ServerSettings) -> Authenticator:
    return build_authenticator(
        settings.vetted_credentials(), settings.jwt_algorithm, settings.jwt_issuer, settings.jwt_audience
    )


def _limiter(settings: ServerSettings) -> Limiter | None:
    rate = settings.rate_limit_per_second
    if rate <= 0:
        return None
    burst = settings.rate_limit_burst or max(1, math.ceil(rate))
    if settings.rate_limit_redis_url:
        return RedisTokenBuckets(settings.rate_limit_redis_url, rate, burst)
    return LocalTokenBuckets(rate, burst)


def _failed_credentials(settings: ServerSettings) -> FailedCredentialLimiter | None:
    per_minute = settings.auth_failures_per_minute
    if not settings.auth_enabled or per_minute <= 0:
        return None
    rate = per_minute / 60
    local = LocalTokenBuckets(rate, per_minute)
    if not settings.rate_limit_redis_url:
        return FailedCredentialLimiter(local)
    # A Redis outage must not lift the limit: each process counts on its own meanwhile.
    shared = RedisTokenBuckets(
        settings.rate_limit_redis_url,
        rate,
        per_minute,
        prefix="registry-serve:auth-failures:",
        fallback=local,
    )
    return FailedCredentialLimiter(shared)
