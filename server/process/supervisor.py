"""uvicorn's worker supervisor, which also clears a dead worker's metrics.

prometheus-client's multiprocess mode keeps one file of values per process, and adds up or takes
the minimum over every file it finds. A worker that dies leaves its files: its last
`prediction_requests_in_flight` would count for good, and a worker killed while loading would hold
`model_loaded` at 0 and fire the model-not-loaded alert forever. `mark_process_dead` removes the
files of the live-mode gauges; counters and histograms keep the dead worker's counts (they happened).
"""

from __future__ import annotations

import os
import socket

from prometheus_client import multiprocess

from server.process.uvicorn_adapter import Config, Multiprocess, worker_pids


class WorkerSupervisor(Multiprocess):
    """`Multiprocess`, marking each worker that left (died, was replaced or retired) dead."""

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self._known: set[int] = set()

    def keep_subprocess_alive(self) -> None:
        # Runs every half second, after signals (SIGHUP restarts, SIGTTOU retires) were handled.
        super().keep_subprocess_alive()
        current = worker_pids(self)
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            for pid in self._known - current:
                multiprocess.mark_process_dead(pid)
        self._known = current
