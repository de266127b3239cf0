"""What the process takes from uvicorn beyond its documented `uvicorn.run`: the multi-worker
supervisor (subclassed to watch its worker processes), and the exit status that tells it a worker
could not start.

This is the one module that imports them, and `tests/server/test_library_adapters.py` fails
loudly when an upgrade moves or changes them.
"""

from __future__ import annotations

from uvicorn import Config
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

__all__ = ["STARTUP_FAILURE", "Config", "Multiprocess", "worker_pids"]


def worker_pids(supervisor: Multiprocess) -> set[int]:
    """The process ids of the supervisor's workers right now."""
    return {process.pid for process in supervisor.processes if process.pid is not None}
