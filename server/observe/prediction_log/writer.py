"""The worker's side of the prediction log: never blocking or failing a request, and slowing it as
little as the process allows.

A sampled request is queued as references (`entry.Entry`: no copies, no encoding) in a queue
bounded in rows (PREDICTION_LOG_QUEUE_ROWS). Every SLICE_ROWS rows (and every
WRITE_INTERVAL_SECONDS, for what is left) the queued requests are encoded as one slice
(`slices.encode`: a few columns of plain values) and sent to the log's writer process
(`writer_process`), which makes their rows and writes them. Why another process: measured on two
cores, making rows and driving the database on a thread of the worker cost the answers several
times what that work takes, through the lock and the caches it shares with the event loop.

A slice stays in the queue until the writer acknowledges it (its rows committed, or refused), so
the bound counts everything not yet written: when the database is slow or down, rows wait up to
the bound, and beyond it they are dropped and counted (`prediction_log_dropped_total{reason=
"queue_full"}`); every offered row is either written or counted. A writer that dies is started
again and sent every slice it had not acknowledged; rows it committed unacknowledged are not
written twice (each row's key is unique: a random prefix per worker, the request's sequence
number and the row's index). Writing resumes by itself when the database answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import random
import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from server.observe import metrics
from server.observe.prediction_log import frames, slices
from server.observe.prediction_log.entry import Entry, Queued
from server.observe.prediction_log.inserts import one_line
from server.observe.prediction_log.migrate import prepare
from server.observe.prediction_log.schema import predictions

logger = logging.getLogger(__name__)

SLICE_ROWS = 32  # rows sent in one slice (their encoding is a few tens of microseconds)
WRITE_INTERVAL_SECONDS = 0.25
RESTART_SECONDS = (0.25, 0.5, 1.0, 2.0, 5.0)  # before starting a writer that died, again
SWITCH_INTERVAL_SECONDS = 0.0005
RETENTION_EVERY_SECONDS = 3600.0
RETENTION_BATCH_ROWS = 5000
WRITER_MODULE = "server.process.log_writer"  # started by name: observe imports nothing of the server
# Why rows go unwritten: the queue was full, the server stopped first, the database refused them.
DROP_REASONS = ("queue_full", "shutdown", "rejected")


class _Child:
    """One writer process and what the worker knows of it."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.alive = True
        self.gone = asyncio.Event()
        self.acks: asyncio.Task[None] | None = None  # its reader, referenced so it is not collected

    def send(self, data: bytes) -> None:
        """Write to the writer's stdin (buffered, never blocking); nothing once it is gone: what it
        did not get, the next writer does."""
        stdin = self.process.stdin
        if self.alive and stdin is not None and not stdin.is_closing():
            try:
                stdin.write(data)
            except (ConnectionError, RuntimeError):
                self.alive = False


class PredictionLog:
    """The queue, its writer process, and deleting rows past retention."""

    def __init__(
        self,
        engine: Engine,
        executor: Executor,
        *,
        queue_rows: int,
        sample: float,
        retention_days: float,
        migrate: bool = True,
        chance: Callable[[], float] = random.random,
        log_level: str = "INFO",
        log_format: str = "text",
    ) -> None:
        self.engine = engine
        self._migrate = migrate
        self._executor = executor
        self._limit = queue_rows
        self._sample = sample
        self._retention_days = retention_days
        self._chance = chance
        self._hello = frames.frame(
            frames.HELLO,
            orjson.dumps(
                {
                    "url": engine.url.render_as_string(hide_password=False),
                    "key_prefix": os.urandom(8).hex(),
                    "migrate": migrate,
                    "log_level": log_level,
                    "log_format": log_format,
                }
            ),
        )
        self._offered: deque[Queued] = deque()  # requests not sent yet
        self._offered_rows = 0
        self._unacked: deque[tuple[int, int, bytes]] = deque()  # slices sent: number, rows, frame
        self._queued_rows = 0  # the rows of both
        self._sequence = itertools.count()
        self._slices = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slice_due = False
        self._child: _Child | None = None
        metrics.PREDICTION_LOG_QUEUE_ROWS.set(0)
        for reason in DROP_REASONS:  # every series exists, at zero, before its first drop
            metrics.PREDICTION_LOG_DROPPED.labels(reason)

    def sampled(self) -> bool:
        """Whether to log this request (PREDICTION_LOG_SAMPLE), asked before an entry is made."""
        return self._sample >= 1.0 or self._chance() < self._sample

    def offer(self, entry: Entry) -> None:
        """Queue a sampled request, or count its rows dropped when the queue is full. Never raises
        and encodes nothing: requests are sent a slice at a time, as soon as the loop is free."""
        rows = entry.rows
        if self._queued_rows + rows > self._limit:
            metrics.PREDICTION_LOG_DROPPED.labels("queue_full").inc(rows)
            return
        self._offered.append((next(self._sequence), entry))
        self._queued_rows += rows
        self._offered_rows += rows
        if self._offered_rows >= SLICE_ROWS and not self._slice_due and self._loop is not None:
            self._slice_due = True
            self._loop.call_soon(self._send_offered)

    @property
    def waiting_rows(self) -> int:
        return self._queued_rows

    async def start(self) -> None:
        """Bring the schema up to date at start-up. A database that refuses this server's schema
        (`SchemaNotCurrent`) stops the start; one that cannot be reached does not: serving starts,
        rows queue, and the writer prepares the schema once the database answers."""
        # The drift thread reads the log back and counts its rows in Python; when the event loop
        # wants Python's lock back meanwhile, it waits up to the switch interval (5 ms by
        # default), and the requests waiting behind it see that as latency. A shorter one bounds it.
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                self._executor, functools.partial(prepare, self.engine, migrate=self._migrate)
            )
        except sa.exc.SQLAlchemyError as error:
            logger.warning(
                "the prediction log's database cannot be prepared yet (%s); rows queue", one_line(error)
            )

    async def run(self) -> None:
        """Keep a writer process running and fed, until cancelled (which leaves the writer to
        `flush`)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        restarts = 0
        while True:
            if self._child is None or not self._child.alive:
                if self._child is not None:
                    restarts += 1
                    metrics.PREDICTION_LOG_WRITE_ERRORS.inc()
                    delay = RESTART_SECONDS[min(restarts, len(RESTART_SECONDS)) - 1]
                    logger.warning(
                        "the prediction log's writer stopped (exit %s); %d rows wait; again in %.2g s",
                        self._child.process.returncode,
                        self._queued_rows,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    await self._stop_child()  # reaped, or killed should it linger
                await self._spawn()
            elif restarts and not self._unacked:
                restarts = 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._child.gone.wait(), WRITE_INTERVAL_SECONDS)  # type: ignore[union-attr]
            self._send_offered()
            metrics.PREDICTION_LOG_QUEUE_ROWS.set(self._queued_rows)

    async def flush(self, timeout: float) -> None:
        """At shutdown: have the writer write what waits, for up to `timeout` seconds; what is left
        is counted dropped (`reason="shutdown"`; a write cut off by the deadline may still commit)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        deadline = loop.time() + timeout
        try:
            if self._queued_rows and (self._child is None or not self._child.alive):
                await asyncio.wait_for(self._spawn(), timeout)
            child = self._child
            if child is not None and child.alive:
                self._send_offered()
                child.send(
                    frames.frame(frames.FLUSH, orjson.dumps({"seconds": max(0.0, deadline - loop.time())}))
                )
                with contextlib.suppress(OSError):
                    child.process.stdin.close()  # type: ignore[union-attr]
                # The writer exits once it has written everything, or at the deadline.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(child.gone.wait(), max(0.0, deadline - loop.time()) + 1.0)
        except (OSError, TimeoutError) as error:
            logger.warning("the prediction log's writer could not be started to flush: %s", one_line(error))
        finally:
            await self._stop_child()
        if self._queued_rows:
            metrics.PREDICTION_LOG_DROPPED.labels("shutdown").inc(self._queued_rows)
            logger.warning("the prediction log dropped %d rows unwritten at shutdown", self._queued_rows)
        self._offered.clear()
        self._unacked.clear()
        self._queued_rows = self._offered_rows = 0
        metrics.PREDICTION_LOG_QUEUE_ROWS.set(0)

    async def _spawn(self) -> None:
        """Start a writer process, give it its settings and every slice not acknowledged yet."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", WRITER_MODULE, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        child = _Child(process)
        self._child = child
        child.send(self._hello)
        for _, _, data in self._unacked:
            child.send(data)
        child.acks = asyncio.get_running_loop().create_task(
            self._read_acks(child), name="prediction-log-acks"
        )

    async def _stop_child(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        child.alive = False
        if child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.process.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.process.wait(), 5.0)

    async def _read_acks(self, child: _Child) -> None:
        """Settle slices as the writer acknowledges them, until its acknowledgements end."""
        stream = child.process.stdout
        assert stream is not None
        try:
            while True:
                header = await stream.readexactly(frames.HEADER_BYTES)
                payload = await stream.readexactly(frames.header_length(header))
                kind, body = payload[:1], orjson.loads(payload[1:])
                if kind == frames.ACK:
                    self._settle(int(body["through"]), int(body["written"]))
                elif kind == frames.FAILED:
                    metrics.PREDICTION_LOG_WRITE_ERRORS.inc()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            child.alive = False
            child.gone.set()

    def _settle(self, through: int, written: int) -> None:
        """Slices up to number `through` are done with: `written` of their rows written, the rest
        refused by the database (or not made into rows)."""
        rows = 0
        while self._unacked and self._unacked[0][0] <= through:
            rows += self._unacked.popleft()[1]
        self._queued_rows -= rows
        metrics.PREDICTION_LOG_WRITTEN.inc(written)
        if rows > written:
            metrics.PREDICTION_LOG_DROPPED.labels("rejected").inc(rows - written)
        metrics.PREDICTION_LOG_QUEUE_ROWS.set(self._queued_rows)

    def _send_offered(self) -> None:
        """Encode what was offered, a slice at a time, and send it to the writer (kept until it
        is acknowledged; a writer that is not running gets it when it starts)."""
        self._slice_due = False
        while self._offered:
            batch: list[Queued] = []
            rows = 0
            while self._offered and rows < SLICE_ROWS:
                queued = self._offered.popleft()
                batch.append(queued)
                rows += queued[1].rows
            self._offered_rows -= rows
            for part_rows, data in self._encoded(batch, rows):
                number = next(self._slices)
                frame = frames.slice_frame(number, data)
                self._unacked.append((number, part_rows, frame))
                if self._child is not None:
                    self._child.send(frame)

    def _encoded(self, batch: list[Queued], rows: int) -> list[tuple[int, bytes]]:
        """The batch of `rows` rows as one encoded slice (its rows, its bytes), or, when that
        fails, each request alone: a request that cannot be encoded is counted as rejected."""
        try:
            return [(rows, slices.encode(batch))]
        except Exception:  # noqa: BLE001 - one request at a time, to find the one that fails
            pass
        out = []
        for queued in batch:
            try:
                out.append((queued[1].rows, slices.encode([queued])))
            except Exception:  # noqa: BLE001 - the request has its answer; the log counts what it lost
                self._queued_rows -= queued[1].rows
                metrics.PREDICTION_LOG_DROPPED.labels("rejected").inc(queued[1].rows)
        return out

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
                # One batch per job on the log's thread: the deletes stay short transactions.
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
