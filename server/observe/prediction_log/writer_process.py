"""The prediction log's writer, run in a process of its own beside each worker: it makes the rows of
the requests the worker sends it and writes them to the database.

Why a process: making rows (JSON for every row) and handing them to a database driver is Python
run per row, and in the worker it would share Python's lock, the CPU caches and the memory of
the requests being served; measured on two cores, that cost the answers several times what the
work itself takes. Here it takes none of the worker's lock.

What it promises the worker: every slice it is sent is acknowledged in order, once its rows are
committed (or refused by the database, or unmakeable, which the worker then counts as rejected).
A batch that fails is tried again with backoff until it is written, so the worker keeps every
unacknowledged slice and sends it again to a new writer should this one die; rows committed
before such a death are not written twice (their keys are unique). It runs until its stdin ends:
then it writes what waits, for the seconds a FLUSH gave it (or EXIT_SECONDS when the worker went
away without one), and returns.

The process itself (its pipes, signals and logging) is `server.process.log_writer`, which the worker
starts; its settings (the database URL among them) arrive in the HELLO frame, never on its command
line.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, BinaryIO

import orjson

from server.observe.prediction_log import frames, inserts, slices
from server.observe.prediction_log.database import open_engine
from server.observe.prediction_log.inserts import one_line
from server.observe.prediction_log.migrate import prepare
from server.observe.prediction_log.rows import Row, rows_of

logger = logging.getLogger(__name__)

MAX_WRITE_ROWS = 5000  # one transaction: large enough to amortise it, small enough to retry
WRITE_INTERVAL_SECONDS = 0.25
RETRY_SECONDS = (0.25, 0.5, 1.0, 2.0, 5.0)
EXIT_SECONDS = 5.0


class Writer:
    """Slices in (from the reader thread), batches out (on the main thread), acknowledgements back."""

    def __init__(self, engine: Any, key_prefix: str, migrate: bool, acks: BinaryIO) -> None:
        self._engine = engine
        self._key_prefix = key_prefix
        self._migrate = migrate
        self._acks = acks
        self._form = inserts.row_format_for(engine)
        self._dbapi_error = inserts.dbapi_error(engine)
        self._ready = False
        self._pending: deque[tuple[int, list[Row]]] = deque()  # slice number, its rows
        self._pending_rows = 0
        self._changed = threading.Condition()
        self._ended = False  # stdin ended
        self._deadline: float | None = None  # when to stop writing and exit

    def receive(self, stream: BinaryIO) -> None:
        """Read frames until the stream ends (the reader thread)."""
        try:
            while (message := frames.read_frame(stream)) is not None:
                kind, body = message
                if kind == frames.SLICE:
                    self._take(*frames.slice_of(body))
                elif kind == frames.FLUSH:
                    with self._changed:
                        self._deadline = time.monotonic() + float(orjson.loads(body)["seconds"])
                        self._changed.notify()
        except Exception:
            logger.exception("the prediction log's writer could not read from its worker")
        with self._changed:
            self._ended = True
            if self._deadline is None:
                self._deadline = time.monotonic() + EXIT_SECONDS
            self._changed.notify()

    def _take(self, number: int, data: bytes) -> None:
        try:
            made, refused = rows_of(slices.decode(data), self._key_prefix, self._form)
            if refused:
                logger.error(
                    "the prediction log could not make rows of %d answers; they are dropped", refused
                )
        except Exception:
            logger.exception("the prediction log's writer could not read a slice; its rows are dropped")
            made = []
        with self._changed:
            self._pending.append((number, made))
            self._pending_rows += len(made)
            if self._pending_rows >= MAX_WRITE_ROWS:
                self._changed.notify()

    def run(self) -> None:
        """Write batches until the stream has ended and everything is written, or the deadline."""
        failures = 0
        while True:
            with self._changed:
                if self._pending_rows < MAX_WRITE_ROWS and not self._ended:
                    self._changed.wait(WRITE_INTERVAL_SECONDS)
                if self._deadline is not None and (
                    time.monotonic() >= self._deadline or (self._ended and not self._pending)
                ):
                    return
                batch = self._batch()
            if not batch:
                continue
            rows = [row for _, made in batch for row in made]
            try:
                rejected = self._write(rows) if rows else 0
            except Exception as error:  # noqa: BLE001 - a database failure is waited out, never raised
                failures += 1
                self._send(frames.FAILED, {})
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS)) - 1]
                if failures == 1 or failures % 20 == 0:
                    logger.warning(
                        "the prediction log could not be written (%s); %d rows wait, retrying every %.2g s",
                        one_line(error),
                        self._pending_rows,
                        delay,
                    )
                self._sleep(delay)
                continue
            if failures:
                logger.info("the prediction log is written again after %d failed attempts", failures)
                failures = 0
            with self._changed:
                for _ in batch:
                    self._pending.popleft()
                self._pending_rows -= len(rows)
            self._send(frames.ACK, {"through": batch[-1][0], "written": len(rows) - rejected})

    def _batch(self) -> list[tuple[int, list[Row]]]:
        """The oldest slices, up to MAX_WRITE_ROWS rows (at least one slice)."""
        batch, rows = [], 0
        for item in self._pending:
            if batch and rows + len(item[1]) > MAX_WRITE_ROWS:
                break
            batch.append(item)
            rows += len(item[1])
        return batch

    def _sleep(self, seconds: float) -> None:
        """Wait before a retry, but never past the deadline."""
        with self._changed:
            if self._deadline is not None:
                seconds = min(seconds, max(0.0, self._deadline - time.monotonic()))
            self._changed.wait(seconds)

    def _write(self, rows: list[Row]) -> int:
        """Write rows in one transaction; the rows rejected. A failure the database may get over
        raises, and the whole batch waits for the next try. A refusal of the data itself gets the
        batch again row by row: the rows refused are dropped (and counted by the worker), so no
        row blocks the queue for good."""
        try:
            self._insert(rows)
            return 0
        except Exception as error:
            if inserts.retried(error, self._dbapi_error):
                raise
            logger.error(
                "the prediction log's database refused a batch (%s); writing it row by row", one_line(error)
            )
        refused = 0
        for row in rows:
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
        if not self._ready:
            prepare(self._engine, migrate=self._migrate)
            self._ready = True
        try:
            inserts.insert(self._engine, rows)
        except Exception as error:
            if inserts.may_lack_the_table(error):
                self._ready = False  # the schema is prepared again before the next try
            raise

    def _send(self, kind: bytes, body: dict[str, Any]) -> None:
        # When the worker is gone, what it did not hear of it has counted itself.
        with contextlib.suppress(OSError):
            self._acks.write(frames.frame(kind, orjson.dumps(body)))


def serve(stream: BinaryIO, acks: BinaryIO, configure_logging: Callable[[str, str], None]) -> None:
    """Read the HELLO frame from `stream`, then write what follows it until the stream ends."""
    hello = frames.read_frame(stream)
    if hello is None or hello[0] != frames.HELLO:
        raise SystemExit("the prediction log's writer expects its settings first")
    config = orjson.loads(hello[1])
    configure_logging(config["log_level"], config["log_format"])
    engine = open_engine(config["url"])
    writer = Writer(engine, config["key_prefix"], bool(config["migrate"]), acks)
    threading.Thread(target=writer.receive, args=(stream,), name="slices", daemon=True).start()
    try:
        writer.run()
    finally:
        engine.dispose()
