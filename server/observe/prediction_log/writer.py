"""Writing the prediction log without ever slowing, blocking or failing a request.

A request's answer is offered to a queue bounded in rows (PREDICTION_LOG_QUEUE_ROWS): an append,
nothing more, on the event loop. One task takes what waits, up to MAX_WRITE_ROWS rows, and writes
it in one transaction on the log's own thread. When the database is slow or down the rows stay
queued, in order, and the batch is retried with backoff until it is written; rows that would not fit
in the queue meanwhile are dropped and counted (`prediction_log_dropped_total{reason="queue_full"}`),
so every offered row is either written or counted. Writing resumes by itself when the database
answers again.

Each row carries a key made when it is queued (`row_key`: a random prefix per process, the entry's
sequence number and the row's index; unique in the table), so a batch retried after a commit whose
acknowledgement was lost is not written twice.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from model_wrapper import Prediction
from server.observe import metrics
from server.observe.prediction_log.entry import Entry
from server.observe.prediction_log.schema import predictions

logger = logging.getLogger(__name__)

MAX_WRITE_ROWS = 2000  # one transaction: large enough to amortise it, small enough to retry
RETRY_SECONDS = (0.25, 0.5, 1.0, 2.0, 5.0)
RETENTION_EVERY_SECONDS = 3600.0
RETENTION_BATCH_ROWS = 5000
# Why rows go unwritten: the queue was full, the server stopped first, the database refused them.
DROP_REASONS = ("queue_full", "shutdown", "rejected")


class PredictionLog:
    """The queue and its writer; also deletes rows past retention."""

    def __init__(
        self,
        engine: Engine,
        executor: Executor,
        *,
        queue_rows: int,
        sample: float,
        retention_days: float,
        prepare: Callable[[], object] = lambda: None,
        chance: Callable[[], float] = random.random,
    ) -> None:
        self.engine = engine
        self._prepare = prepare
        self._ready = False
        self._executor = executor
        self._limit = queue_rows
        self._sample = sample
        self._retention_days = retention_days
        self._chance = chance
        self._entries: deque[tuple[int, Entry]] = deque()
        self._rows = 0
        self._arrived = asyncio.Event()
        self._key_prefix = os.urandom(8).hex()
        self._sequence = itertools.count()
        metrics.PREDICTION_LOG_QUEUE_ROWS.set(0)
        for reason in DROP_REASONS:  # every series exists, at zero, before its first drop
            metrics.PREDICTION_LOG_DROPPED.labels(reason)

    def sampled(self) -> bool:
        """Whether to log this request (PREDICTION_LOG_SAMPLE), asked before an entry is made."""
        return self._sample >= 1.0 or self._chance() < self._sample

    def offer(self, entry: Entry) -> None:
        """Queue a sampled request's rows, or count them dropped when the queue is full."""
        rows = entry.rows
        if self._rows + rows > self._limit:
            metrics.PREDICTION_LOG_DROPPED.labels("queue_full").inc(rows)
            return
        self._entries.append((next(self._sequence), entry))
        self._rows += rows
        self._arrived.set()

    @property
    def waiting_rows(self) -> int:
        return self._rows

    async def start(self) -> None:
        """Bring the schema up to date at start-up. A database that refuses this server's schema
        (`SchemaNotCurrent`) stops the start; one that cannot be reached does not: serving starts,
        rows queue, and `run` prepares the schema once the database answers."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._prepare)
        except sa.exc.SQLAlchemyError as error:
            logger.warning(
                "the prediction log's database cannot be prepared yet (%s); rows queue", one_line(error)
            )
            return
        self._ready = True

    async def run(self) -> None:
        """Write what is offered, until cancelled; failed batches wait and are retried."""
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            metrics.PREDICTION_LOG_QUEUE_ROWS.set(self._rows)
            if not self._entries:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            batch = self._peek()
            try:
                if not self._ready:
                    await loop.run_in_executor(self._executor, self._prepare)
                    self._ready = True
                rejected = await loop.run_in_executor(self._executor, self._write, batch)
            except Exception as error:  # noqa: BLE001 - a database failure is waited out, never raised
                failures += 1
                metrics.PREDICTION_LOG_WRITE_ERRORS.inc()
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS)) - 1]
                if failures == 1 or failures % 20 == 0:
                    logger.warning(
                        "the prediction log could not be written (%s); %d rows wait, retrying every %.2g s",
                        one_line(error),
                        self._rows,
                        delay,
                    )
                await self._wait(delay)
                continue
            if failures:
                logger.info("the prediction log is written again after %d failed attempts", failures)
                failures = 0
            self._settle(batch, rejected)

    async def _wait(self, seconds: float) -> None:
        """Sleep before a retry, keeping `prediction_log_queue_rows` current meanwhile (`offer`
        does not touch the gauge: it is an append and nothing more)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while (left := until - loop.time()) > 0:
            await asyncio.sleep(min(left, 0.25))
            metrics.PREDICTION_LOG_QUEUE_ROWS.set(self._rows)

    async def flush(self, timeout: float) -> None:
        """At shutdown: write what waits, for up to `timeout` seconds; what is left is counted
        dropped (`reason="shutdown"`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._entries and loop.time() < deadline:
            batch = self._peek()
            try:
                rejected = await asyncio.wait_for(
                    loop.run_in_executor(self._executor, self._write, batch), deadline - loop.time()
                )
            except Exception:  # noqa: BLE001 - shutting down: what cannot be written is counted
                break
            self._settle(batch, rejected)
        if self._rows:
            metrics.PREDICTION_LOG_DROPPED.labels("shutdown").inc(self._rows)
            logger.warning(
                "the prediction log dropped %d rows it could not write before shutdown", self._rows
            )
        self._entries.clear()
        self._rows = 0
        metrics.PREDICTION_LOG_QUEUE_ROWS.set(0)

    async def keep_retention(self) -> None:
        """Delete rows older than PREDICTION_LOG_RETENTION_DAYS now and every hour, until cancelled
        (at once without a retention)."""
        if self._retention_days <= 0:
            return
        loop = asyncio.get_running_loop()
        while True:
            cutoff = datetime.now(UTC) - timedelta(days=self._retention_days)
            deleted = 0
            try:
                # One batch per job on the log's thread: writes take turns with the deletes.
                while (batch := await loop.run_in_executor(self._executor, self.delete_batch, cutoff)) > 0:
                    deleted += batch
            except Exception as error:  # noqa: BLE001 - retried at the next round
                logger.warning("prediction log retention failed: %s", one_line(error))
            if deleted:
                logger.info("the prediction log deleted %d rows past retention", deleted)
            await asyncio.sleep(RETENTION_EVERY_SECONDS)

    def delete_expired(self, now: datetime | None = None) -> int:
        """Delete every row past retention (batch after batch); the rows deleted."""
        cutoff = (now or datetime.now(UTC)) - timedelta(days=self._retention_days)
        deleted = 0
        while (batch := self.delete_batch(cutoff)) > 0:
            deleted += batch
        return deleted

    def delete_batch(self, cutoff: datetime) -> int:
        """Delete up to RETENTION_BATCH_ROWS of the oldest rows logged before `cutoff`, in a short
        transaction; the rows deleted. Rows another worker is deleting are skipped, not waited for
        (PostgreSQL; SQLite has one writer at a time anyway)."""
        oldest = (
            sa.select(predictions.c.id)
            .where(predictions.c.logged_at < cutoff)
            .order_by(predictions.c.id)
            .limit(RETENTION_BATCH_ROWS)
            .with_for_update(skip_locked=True)
        )
        with self.engine.begin() as connection:
            ids = connection.execute(oldest).scalars().all()
            if ids:
                connection.execute(sa.delete(predictions).where(predictions.c.id.in_(ids)))
        return len(ids)

    def _peek(self) -> list[tuple[int, Entry]]:
        """The oldest entries, up to MAX_WRITE_ROWS rows (at least one), left in the queue until
        they are written."""
        batch = []
        rows = 0
        for queued in self._entries:
            if batch and rows + queued[1].rows > MAX_WRITE_ROWS:
                break
            batch.append(queued)
            rows += queued[1].rows
        return batch

    def _settle(self, batch: list[tuple[int, Entry]], rejected: int) -> None:
        """The batch is done with: its rows written, but for `rejected` ones the database refused."""
        rows = 0
        for _ in batch:
            rows += self._entries.popleft()[1].rows
        self._rows -= rows
        metrics.PREDICTION_LOG_WRITTEN.inc(rows - rejected)
        if rejected:
            metrics.PREDICTION_LOG_DROPPED.labels("rejected").inc(rejected)
        metrics.PREDICTION_LOG_QUEUE_ROWS.set(self._rows)

    def _write(self, batch: list[tuple[int, Entry]]) -> int:
        """Write a batch in one transaction; the rows rejected.

        A failure the database may get over (unreachable, restarting, read-only after a failover,
        its table gone: any database error but a refusal of the data) raises, and the whole batch
        waits for the next try. A refusal of the data itself (a value the database or its driver
        will never take) gets the batch again one entry at a time: the entries refused are dropped
        and counted (`reason="rejected"`), so no row blocks the queue for good."""
        statement = _insert_ignoring_duplicates(self.engine)
        rows: list[list[dict[str, Any]]] = []
        rejected = 0
        for sequence, entry in batch:
            try:
                rows.append(self._rows_of(sequence, entry))
            except Exception:  # noqa: BLE001 - an entry that cannot become rows is refused, not retried
                rejected += entry.rows
        try:
            self._insert(statement, [row for entry_rows in rows for row in entry_rows])
            return rejected
        except Exception as error:
            if _retried(error):
                raise
            logger.error(
                "the prediction log's database refused a batch (%s); writing it entry by entry",
                one_line(error),
            )
        refused = 0
        for entry_rows in rows:
            try:
                self._insert(statement, entry_rows)
            except Exception as error:
                if _retried(error):
                    raise
                refused += len(entry_rows)
        if refused:
            logger.error("the prediction log's database refused %d rows; they are dropped", refused)
        return rejected + refused

    def _insert(self, statement: Any, rows: list[dict[str, Any]]) -> None:
        try:
            with self.engine.begin() as connection:
                connection.execute(statement, rows)
        except sa.exc.ProgrammingError:
            self._ready = False  # the table may be gone: the schema is prepared again first
            raise

    def _rows_of(self, sequence: int, entry: Entry) -> list[dict[str, Any]]:
        """The table rows of one entry, keyed by its place in the queue (the same on a retry)."""
        prefix = f"{self._key_prefix}{sequence:x}-"
        logged_at = datetime.fromtimestamp(entry.logged_at, UTC)
        count = entry.rows
        features = _fitting(_feature_rows(entry), count)
        classes, probabilities = (_fitting(rows, count) for rows in _answer_rows(entry))
        return [
            {
                "row_key": f"{prefix}{index}",
                "logged_at": logged_at,
                "request_id": entry.request_id,
                "row_index": index,
                "route": entry.route,
                "model_name": _cut(entry.model_name, 256),
                "model_version": _cut(entry.version, 64),
                "variant": entry.variant,
                "features": features[index] if features is not None else None,
                "predicted_class": _cut(classes[index], 256) if classes is not None else None,
                "probabilities": probabilities[index] if probabilities is not None else None,
                "latency_ms": entry.latency_ms,
                "caller": _cut(entry.caller, 128),
            }
            for index in range(count)
        ]


def _retried(error: BaseException) -> bool:
    """Whether a later try may succeed: any error the database (or its connection) reports but a
    refusal of the data (DataError: a value it cannot store; IntegrityError: a constraint, never
    a duplicate key, which the insert skips). Errors before the database is reached (a value the
    driver cannot encode) are refusals of the data too."""
    if not isinstance(error, sa.exc.DBAPIError):
        return False
    return not isinstance(error, (sa.exc.DataError, sa.exc.IntegrityError))


def _fitting(rows: list[Any] | None, count: int) -> list[Any] | None:
    """Per-row values only when there is one per row (a model's output of another length is not
    matched to rows by guesswork)."""
    return rows if rows is not None and len(rows) == count else None


def _cut(text: str | None, length: int) -> str | None:
    """Text fitted to its column (a JWT subject, say, may be longer than any key name), and
    storable everywhere: NUL (which PostgreSQL's text refuses) becomes U+FFFD, and a lone surrogate
    (which no UTF-8 encoder takes) `?`."""
    if text is None:
        return None
    text = text[:length]
    if text.isascii() and "\x00" not in text:
        return text
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def _feature_rows(entry: Entry) -> list[dict[str, float]] | None:
    if entry.features is None or entry.feature_names is None:
        return None
    names = entry.feature_names
    return [dict(zip(names, row, strict=True)) for row in entry.features.tolist()]


def _answer_rows(entry: Entry) -> tuple[list[str] | None, list[dict[str, float]] | None]:
    answer = entry.answer
    if isinstance(answer, Prediction):
        labels = [str(label) for label in answer.labels.tolist()]
        names = entry.class_names
        if names is None or len(names) != answer.probabilities.shape[1]:
            return labels, None
        probabilities = [dict(zip(names, row, strict=True)) for row in answer.probabilities.tolist()]
        return labels, probabilities
    if isinstance(answer, list):
        return [str(row)[:256] for row in answer], None
    return None, None


def _insert_ignoring_duplicates(engine: Engine) -> Any:
    backend = engine.url.get_backend_name()
    if backend == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif backend == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        return sa.insert(predictions)
    return insert(predictions).on_conflict_do_nothing(index_elements=["row_key"])


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300]}" if text else type(error).__name__
