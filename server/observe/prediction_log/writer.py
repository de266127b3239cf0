"""Writing the prediction log without ever blocking or failing a request, and while slowing it as
little as the process allows.

A sampled request is queued as references (`entry.Entry`: no copies, no encoding) in a queue
bounded in rows (PREDICTION_LOG_QUEUE_ROWS). One task, every WRITE_INTERVAL_SECONDS (at once when
a full batch of MAX_WRITE_ROWS waits), makes the waiting requests' rows (`rows.rows_of`: their JSON
encoded a batch at a time) on the event loop, in slices of MAKE_SLICE_ROWS with the loop's other
work between them, and hands the oldest rows to the log's own thread, which writes them in one
transaction with as few driver calls as the database allows (`inserts`).

Why the rows are made on the event loop and not on the thread: the two share Python's lock. Python
run on the thread makes the lock change hands every switch interval while both want it, and each
handoff costs the event loop more than the work it waited for (measured: making the rows on the
thread cost the answers twice what making them on the loop did). The thread runs the drivers,
which let go of the lock while the database works.

When the database is slow or down the rows stay queued, in order, and the batch is retried with
backoff until it is written; rows that would not fit in the queue meanwhile are dropped and counted
(`prediction_log_dropped_total{reason="queue_full"}`), so every offered row is either written or
counted. Writing resumes by itself when the database answers again.

Each row carries a key made from its request's place in the queue (`row_key`: a random prefix per
process, the request's sequence number and the row's index; unique in the table), so a batch
retried after a commit whose acknowledgement was lost is not written twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from server.observe import metrics
from server.observe.prediction_log import inserts
from server.observe.prediction_log.entry import Entry
from server.observe.prediction_log.rows import Queued, Row, rows_of
from server.observe.prediction_log.schema import predictions

logger = logging.getLogger(__name__)

MAX_WRITE_ROWS = 5000  # one transaction: large enough to amortise it, small enough to retry
MAKE_SLICE_ROWS = 32  # rows made in one go on the event loop (a small fraction of a millisecond)
WRITE_INTERVAL_SECONDS = 0.25
RETRY_SECONDS = (0.25, 0.5, 1.0, 2.0, 5.0)
SWITCH_INTERVAL_SECONDS = 0.0005
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
        self._offered: deque[Queued] = deque()  # requests whose rows are not made yet
        self._queue: deque[Row] = deque()  # rows made, oldest first, until written
        self._queued_rows = 0  # the rows of both
        self._offered_rows = 0
        self._loop: asyncio.AbstractEventLoop | None = None  # `run`'s, where slices are made
        self._slice_due = False
        self._full_batch = asyncio.Event()
        self._key_prefix = os.urandom(8).hex()
        self._sequence = itertools.count()
        self._form = inserts.row_format_for(engine)
        self._dbapi_error = inserts.dbapi_error(engine)
        metrics.PREDICTION_LOG_QUEUE_ROWS.set(0)
        for reason in DROP_REASONS:  # every series exists, at zero, before its first drop
            metrics.PREDICTION_LOG_DROPPED.labels(reason)

    def sampled(self) -> bool:
        """Whether to log this request (PREDICTION_LOG_SAMPLE), asked before an entry is made."""
        return self._sample >= 1.0 or self._chance() < self._sample

    def offer(self, entry: Entry) -> None:
        """Queue a sampled request, or count its rows dropped when the queue is full. Never raises
        and encodes nothing: its rows are made later, with others (`_make_rows`)."""
        rows = entry.rows
        if self._queued_rows + rows > self._limit:
            metrics.PREDICTION_LOG_DROPPED.labels("queue_full").inc(rows)
            return
        self._offered.append((next(self._sequence), entry))
        self._queued_rows += rows
        self._offered_rows += rows
        # A slice's rows are made as soon as the loop is free, so that making them never waits
        # for a whole interval's worth and stalls the requests in flight meanwhile.
        if self._offered_rows >= MAKE_SLICE_ROWS and not self._slice_due and self._loop is not None:
            self._slice_due = True
            self._loop.call_soon(self._make_slice)
        if self._queued_rows >= MAX_WRITE_ROWS:
            self._full_batch.set()

    @property
    def waiting_rows(self) -> int:
        return self._queued_rows

    async def start(self) -> None:
        """Bring the schema up to date at start-up. A database that refuses this server's schema
        (`SchemaNotCurrent`) stops the start; one that cannot be reached does not: serving starts,
        rows queue, and `run` prepares the schema once the database answers."""
        # The writer's thread runs Python between its driver calls; when the event loop wants
        # Python's lock back meanwhile, it waits up to the switch interval (5 ms by default), and
        # the requests waiting behind it see that as latency. A shorter interval bounds it.
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
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
        self._loop = loop
        failures = 0
        while True:
            metrics.PREDICTION_LOG_QUEUE_ROWS.set(self._queued_rows)
            if self._queued_rows < MAX_WRITE_ROWS:
                self._full_batch.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full_batch.wait(), WRITE_INTERVAL_SECONDS)
            await self._make_rows()
            if not self._queue:
                continue
            batch = list(itertools.islice(self._queue, MAX_WRITE_ROWS))
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
                        self._queued_rows,
                        delay,
                    )
                await self._wait(delay)
                continue
            if failures:
                logger.info("the prediction log is written again after %d failed attempts", failures)
                failures = 0
            self._settle(len(batch), rejected)

    def _make_slice(self) -> None:
        self._slice_due = False
        self._make(len(self._offered))

    async def _make_rows(self) -> None:
        """Make the rows of every request offered so far, MAKE_SLICE_ROWS at a time, letting the
        event loop's other work run between slices."""
        while self._offered:
            self._make(MAKE_SLICE_ROWS, rows=True)
            if self._offered:
                await asyncio.sleep(0)

    def _make(self, count: int, *, rows: bool = False) -> None:
        """Make the rows of the oldest `count` requests offered (of requests up to `count` rows,
        with `rows`); a request that cannot become rows is counted as rejected."""
        batch: list[Queued] = []
        made = 0
        while self._offered and (made < count if rows else len(batch) < count):
            queued = self._offered.popleft()
            batch.append(queued)
            made += queued[1].rows
        self._offered_rows -= made
        if not batch:
            return
        rows_made, refused = rows_of(batch, self._key_prefix, self._form)
        self._queue.extend(rows_made)
        if refused:
            self._queued_rows -= refused
            metrics.PREDICTION_LOG_DROPPED.labels("rejected").inc(refused)

    async def _wait(self, seconds: float) -> None:
        """Sleep before a retry, keeping `prediction_log_queue_rows` current meanwhile (`offer`
        does not touch the gauge: it is an append and nothing more)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while (left := until - loop.time()) > 0:
            await asyncio.sleep(min(left, 0.25))
            metrics.PREDICTION_LOG_QUEUE_ROWS.set(self._queued_rows)

    async def flush(self, timeout: float) -> None:
        """At shutdown: write what waits, for up to `timeout` seconds; what is left is counted
        dropped (`reason="shutdown"`; a write cut off by the deadline may still commit)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self._make_rows()
        while self._queue and loop.time() < deadline:
            batch = list(itertools.islice(self._queue, MAX_WRITE_ROWS))
            try:
                rejected = await asyncio.wait_for(
                    loop.run_in_executor(self._executor, self._write, batch), deadline - loop.time()
                )
            except Exception:  # noqa: BLE001 - shutting down: what cannot be written is counted
                break
            self._settle(len(batch), rejected)
        if self._queued_rows:
            metrics.PREDICTION_LOG_DROPPED.labels("shutdown").inc(self._queued_rows)
            logger.warning("the prediction log dropped %d rows unwritten at shutdown", self._queued_rows)
        self._offered.clear()
        self._queue.clear()
        self._queued_rows = self._offered_rows = 0
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

    def _settle(self, rows: int, rejected: int) -> None:
        """The oldest `rows` are done with: written, but for `rejected` ones the database refused."""
        for _ in range(rows):
            self._queue.popleft()
        self._queued_rows -= rows
        metrics.PREDICTION_LOG_WRITTEN.inc(rows - rejected)
        if rejected:
            metrics.PREDICTION_LOG_DROPPED.labels("rejected").inc(rejected)
        metrics.PREDICTION_LOG_QUEUE_ROWS.set(self._queued_rows)

    def _write(self, batch: list[Row]) -> int:
        """Write a batch in one transaction; the rows rejected. A failure the database may get over
        raises, and the whole batch waits for the next try. A refusal of the data itself gets the
        batch again row by row: the rows refused are dropped and counted (`reason="rejected"`), so
        no row blocks the queue for good."""
        try:
            self._insert(batch)
            return 0
        except Exception as error:
            if inserts.retried(error, self._dbapi_error):
                raise
            logger.error(
                "the prediction log's database refused a batch (%s); writing it row by row", one_line(error)
            )
        refused = 0
        for row in batch:
            try:
                self._insert([row])
            except Exception as error:
                if inserts.retried(error, self._dbapi_error):
                    raise
                refused += 1
        if refused:
            logger.error("the prediction log's database refused %d rows; they are dropped", refused)
        return refused

    def _insert(self, rows: list[Row]) -> None:
        try:
            inserts.insert(self.engine, rows)
        except Exception as error:
            if inserts.may_lack_the_table(error):
                self._ready = False  # the schema is prepared again before the next try
            raise


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300]}" if text else type(error).__name__
