"""The prediction log's writer process (`python -m server.process.log_writer`), started by each
worker that logs: its pipes, signals and logging, around `observe.prediction_log.writer_process`.

Acknowledgements go back to the worker on the original stdout; anything else printed there (by a
library, say) goes to stderr instead, never into them. SIGINT and SIGTERM, which a terminal or a
container stop deliver to the whole process group, are ignored: the writer ends when its stdin
does (the worker's shutdown, or its death), after writing what it holds.
"""

from __future__ import annotations

import os
import signal

from server.observe.prediction_log.writer_process import serve
from server.process.logging_setup import configure_logging


def main() -> None:
    acks = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.SIG_IGN)
    serve(os.fdopen(0, "rb"), acks, lambda level, fmt: configure_logging(level, fmt, access_log=False))


if __name__ == "__main__":
    main()
