"""Log configuration: plain text or one JSON object per line, each line with its request id."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from server.edge.request_context import current_request_id

_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "request_id"}


class RequestIdFilter(logging.Filter):
    """Stamps every record with the id of the request it was logged under (or `-`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get() or "-"
        return True


class WithholdLibraryMessagesAboutInput(logging.Filter):
    """Replaces what a library (MLflow) logs while a request is being served with a fixed line.

    MLflow's schema enforcement logs the request's own column names ("Found extra inputs …"), and
    other messages it writes while parsing or predicting may quote values: the request's data,
    which the log must not hold. Its messages outside requests (loading a model) are kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(OWN_LOGGERS) or current_request_id.get() is None:
            return True
        record.msg = "%s logged a message while serving this request, withheld: it may quote the input"
        record.args = (record.name,)
        record.exc_info = record.exc_text = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRIBUTES})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# Loggers of this server and of uvicorn, whose messages never quote a request's input.
OWN_LOGGERS = ("server", "uvicorn")
# Libraries whose loggers write through the same handler, in the same format.
LIBRARY_LOGGERS = ("mlflow",)


def configure_logging(level: str, fmt: str, *, access_log: bool) -> None:
    """Route the server's, uvicorn's and MLflow's loggers to stderr in the chosen format.

    uvicorn writes an access line for a connection only while `uvicorn.access` has a handler, and
    it removes that handler itself only when it configures logging after us (WORKERS=1). A worker
    builds its app, and so calls this, after uvicorn has configured logging, so the access
    setting is applied here too; without it, every worker logged every request at INFO.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(WithholdLibraryMessagesAboutInput())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    for name in ("server", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
        logger.setLevel(level)
    for name in LIBRARY_LOGGERS:  # their own levels stay; their own handlers would bypass ours
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
    if not access_log:
        logging.getLogger("uvicorn.access").handlers = []
