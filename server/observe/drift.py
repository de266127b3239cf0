"""Live drift: how the features (and predicted classes) of the served versions compare with the
data each was trained on, computed from the prediction log.

Why from the log: it is the one place every worker and every replica writes to, so the numbers are
the deployment's, whichever worker computes them or answers GET /model/drift, and computing them
never touches the hot path. Each worker reads the rows logged since its last look (by row id; one
indexed query per version), so the work per refresh is proportional to the new rows only.

The window (DRIFT_WINDOW, `ROWS/DURATION`) holds per version the latest ROWS rows logged within
DURATION. It is kept as running bin counts: each new row adds one count per feature to its PSI bin
(the training deciles) and its KS grid bin (the training quantile grid), and each row that leaves
the window takes them away again, so PSI and KS are a few vector operations per feature whatever the
window's size (`model_wrapper.reference_profile` has the reference and the statistics).

A version logged without a reference profile, or served without a registry version, gets no
numbers and says why. A version that stops being served has its gauges set to NaN (its series stay
until restart, as prometheus-client's multiprocess mode keeps them), so no alert fires for it.

Rows committed out of id order by concurrent writers (PostgreSQL sequences are not transactional)
can land below ids a worker has already read: their ids are looked for again over LATE_ID_MARGIN,
so they are counted once they show. Each refresh reads at most READ_ROWS new rows per version, the
newest: under heavy traffic the window is a sample of the latest rows, at a bounded cost.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from model_wrapper.reference_profile import ReferenceProfile, ks_statistic, psi
from server.observe import metrics
from server.observe.prediction_log import queries
from server.observe.prediction_log.inserts import one_line

logger = logging.getLogger(__name__)

READ_ROWS = 2_000  # rows read per version per refresh, at most
# Rows read (and counted) per query. Reading and counting is Python run on the drift thread, which
# shares Python's lock with the event loop: a refresh in short pieces with a pause between them
# never keeps the loop waiting for long.
FETCH_ROWS = 250
PAUSE_SECONDS = 0.005
# How far below the newest id read a row may still appear: ids are taken when a batch is inserted and
# seen when it commits, so another worker's batch (up to 2,000 rows) in flight, or several, may
# commit below ids already read. Only ids are read again over this margin, through the index.
LATE_ID_MARGIN = 50_000


@dataclass(frozen=True)
class ServedVersion:
    """A variant being served, and what drift needs of it."""

    model_name: str | None
    version: str | None
    variant: str
    profile: ReferenceProfile | None
    missing: str | None  # why there is no profile, when there is none


@dataclass
class _Chunk:
    times: np.ndarray  # seconds since the epoch, per row
    psi_bins: np.ndarray  # (rows, features) flat indices into the PSI counts
    grid_bins: np.ndarray  # (rows, features) flat indices into the grid counts
    classes: np.ndarray  # per row, the class's position in the profile, or -1

    def __len__(self) -> int:
        return len(self.times)

    def select(self, rows: np.ndarray | slice) -> _Chunk:
        return _Chunk(self.times[rows], self.psi_bins[rows], self.grid_bins[rows], self.classes[rows])


class VersionWindow:
    """One version's live window as running counts."""

    def __init__(self, profile: ReferenceProfile, max_rows: int, max_seconds: float) -> None:
        self.profile = profile
        self._max_rows = max_rows
        self._max_seconds = max_seconds
        features = profile.features
        self._psi_width = max(f.psi_bin_count for f in features)
        self._grid_width = max(f.grid_bin_count for f in features)
        self._psi_offsets = np.arange(len(features)) * self._psi_width
        self._grid_offsets = np.arange(len(features)) * self._grid_width
        self._psi_counts = np.zeros(len(features) * self._psi_width, dtype=np.int64)
        self._grid_counts = np.zeros(len(features) * self._grid_width, dtype=np.int64)
        self._class_labels = [c.label for c in profile.classes]
        self._class_index = {label: i for i, label in enumerate(self._class_labels)}
        self._class_counts = np.zeros(len(self._class_labels), dtype=np.int64)
        self._chunks: deque[_Chunk] = deque()
        self.rows = 0
        self.start_id = 0  # rows at or below this id are not this window's to read
        self.read: set[int] = set()  # ids read above `floor`, so a re-read skips them
        self.newest_id = 0

    @property
    def floor(self) -> int:
        """Ids above this are read again (only their ids) at each refresh, so a row committed
        after a higher id was already read is still counted once it is visible."""
        return max(self.start_id, self.newest_id - LATE_ID_MARGIN)

    def ids_to_look_at(self, wanted: int) -> int:
        """How many of the newest ids above `floor` hold the newest `wanted` unread ones (where
        there are that many): the ids already read among them, and `wanted` more."""
        floor = self.floor
        self.read = {i for i in self.read if i > floor}
        return wanted + len(self.read)

    def unread(self, ids: list[int]) -> list[int]:
        """Of the ids found above `floor`, those not read yet; ids below the floor are forgotten."""
        floor = self.floor
        self.read = {i for i in self.read if i > floor}
        return [i for i in ids if i > floor and i not in self.read]

    def add(self, rows: queries.NewRows) -> None:
        """Count rows read from the log (rows without every feature are left out)."""
        if not rows.ids:
            return
        self.read.update(rows.ids)
        self.newest_id = max(self.newest_id, max(rows.ids))
        names = self.profile.feature_names
        matrix = np.array(
            [
                [_number(row.get(n)) for n in names] if isinstance(row, dict) else [np.nan] * len(names)
                for row in rows.features
            ],
            dtype=np.float64,
        ).reshape(len(rows.ids), len(names))
        keep = np.isfinite(matrix).all(axis=1)
        if not keep.any():
            return
        matrix = matrix[keep]
        times = np.array([_epoch(t) for t, k in zip(rows.logged_at, keep, strict=True) if k])
        classes = np.array(
            [self._class_index.get(c, -1) for c, k in zip(rows.predicted_class, keep, strict=True) if k],
            dtype=np.int64,
        )
        psi_bins = np.column_stack([f.psi_bins(matrix[:, j]) for j, f in enumerate(self.profile.features)])
        grid_bins = np.column_stack([f.grid_bins(matrix[:, j]) for j, f in enumerate(self.profile.features)])
        chunk = _Chunk(times, psi_bins + self._psi_offsets, grid_bins + self._grid_offsets, classes)
        self._count(chunk, +1)
        self._chunks.append(chunk)
        self.rows += len(times)

    def expire(self, now: float) -> None:
        """Let go of every row older than the window's duration (wherever it lies: a worker's rows
        written late, after an outage, arrive among newer ones), then of the first-read rows beyond
        the window's rows."""
        oldest = now - self._max_seconds
        kept: deque[_Chunk] = deque()
        for chunk in self._chunks:
            stale = chunk.times < oldest
            if stale.any():
                self._count(chunk.select(stale), -1)
                self.rows -= int(stale.sum())
                chunk = chunk.select(~stale)
            if len(chunk):
                kept.append(chunk)
        self._chunks = kept
        while self.rows > self._max_rows:
            chunk = self._chunks[0]
            excess = min(len(chunk), self.rows - self._max_rows)
            self._count(chunk.select(slice(None, excess)), -1)
            self.rows -= excess
            if excess == len(chunk):
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk.select(slice(excess, None))

    def statistics(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Per feature PSI and KS; per class the live and training shares and their ratio."""
        features = []
        for j, feature in enumerate(self.profile.features):
            live_psi = self._psi_counts[j * self._psi_width : j * self._psi_width + feature.psi_bin_count]
            live_grid = self._grid_counts[
                j * self._grid_width : j * self._grid_width + feature.grid_bin_count
            ]
            features.append(
                {
                    "name": feature.name,
                    "psi": psi(feature.bin_counts, live_psi),
                    "ks": ks_statistic(feature, live_grid),
                }
            )
        classes = []
        training = self.profile.class_shares()
        counted = int(self._class_counts.sum())
        for label, count in zip(self._class_labels, self._class_counts.tolist(), strict=True):
            live = count / counted if counted else None
            expected = training[label]
            ratio = live / expected if live is not None and expected > 0 else None
            classes.append({"class": label, "live_share": live, "training_share": expected, "ratio": ratio})
        return features, classes

    def _count(self, chunk: _Chunk, sign: int) -> None:
        self._psi_counts += sign * np.bincount(chunk.psi_bins.ravel(), minlength=len(self._psi_counts))
        self._grid_counts += sign * np.bincount(chunk.grid_bins.ravel(), minlength=len(self._grid_counts))
        known = chunk.classes[chunk.classes >= 0]
        self._class_counts += sign * np.bincount(known, minlength=len(self._class_counts))


class DriftMonitor:
    """Keeps a window per served version, refreshed from the log, and publishes the numbers."""

    def __init__(
        self,
        engine: Engine,
        executor: Executor,
        served: Callable[[], list[ServedVersion]],
        *,
        max_rows: int,
        max_seconds: float,
        min_rows: int,
        refresh_seconds: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._executor = executor
        self._served = served
        self._max_rows = max_rows
        self._max_seconds = max_seconds
        self._min_rows = min_rows
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._windows: dict[tuple[str | None, str], VersionWindow] = {}
        self._report: list[dict[str, Any]] = []
        self._refreshed_at: datetime | None = None
        self._published: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._error: str | None = None
        self._refreshing = threading.Lock()
        self._counted: set[str] = set()  # versions with a `drift_window_rows` series

    async def run(self) -> None:
        """Refresh every `refresh_seconds` until cancelled; a failed refresh keeps the last numbers."""
        loop = asyncio.get_running_loop()
        failed = False
        while True:
            try:
                await loop.run_in_executor(self._executor, self.refresh)
                failed = False
            except Exception as error:  # noqa: BLE001 - drift never takes anything down
                # The details (a database host, say) go to the log, not to every `predict` caller.
                self._error = "the prediction log could not be read; the server log says why"
                if not failed:
                    logger.warning(
                        "drift could not be refreshed from the prediction log: %s", one_line(error)
                    )
                failed = True
            await asyncio.sleep(self._refresh_seconds)

    def refresh(self) -> None:
        """Read new rows for every served version, slide the windows, publish the numbers (one
        refresh at a time)."""
        with self._refreshing:
            self._refresh()

    def _refresh(self) -> None:
        now = self._clock()
        report = []
        live_keys = set()
        counted = set()
        for served in self._served():
            entry: dict[str, Any] = {
                "model": served.model_name,
                "version": served.version,
                "variant": served.variant,
            }
            report.append(entry)
            if served.version is None:
                entry.update(status="no_reference_profile", reason="the served model has no registry version")
                continue
            if served.profile is None:
                entry.update(status="no_reference_profile", reason=served.missing)
                continue
            key = (served.model_name, served.version)
            live_keys.add(key)
            window = self._windows.get(key)
            if window is None:
                window = VersionWindow(served.profile, self._max_rows, self._max_seconds)
                # A new window starts at the version's latest rows, not at the oldest of the hour.
                window.start_id = queries.window_start(
                    self._engine, served.model_name, served.version, self._max_rows
                )
                self._windows[key] = window
            self._read(window, served.model_name, served.version)
            window.expire(now.timestamp())
            entry["rows"] = window.rows
            metrics.DRIFT_WINDOW_ROWS.labels(served.version).set(window.rows)
            counted.add(served.version)
            if window.rows < self._min_rows:
                entry.update(
                    status="collecting",
                    reason=f"{window.rows} rows in the window; drift is given from {self._min_rows}",
                )
                self._retire(served.version)  # numbers from a window now too thin would go stale
                continue
            features, classes = window.statistics()
            entry.update(status="ok", features=features, classes=classes)
            self._publish(served.version, features, classes)
        for key in set(self._windows) - live_keys:
            del self._windows[key]
        for version in set(self._published) - {k[1] for k in live_keys}:
            self._retire(version)
        for version in self._counted - counted:
            metrics.DRIFT_WINDOW_ROWS.labels(version).set(0)
        self._counted = counted
        self._report = report
        self._refreshed_at = now
        self._error = None

    def _read(self, window: VersionWindow, model_name: str | None, version: str) -> None:
        """The version's rows not read yet: their ids above the window's floor (index only), then
        the rows of the unread ones, FETCH_ROWS at a time."""
        # Only the newest fill the window (older unread rows would leave it at once), and at most
        # READ_ROWS per refresh: under heavy traffic the window is a sample of the latest rows,
        # which costs the answers a bounded share of the CPU whatever the traffic. So only the
        # newest ids are looked at, however many rows were logged since the last refresh.
        wanted = min(self._max_rows, READ_ROWS)
        ids = queries.ids_after(
            self._engine, model_name, version, window.floor, window.ids_to_look_at(wanted)
        )
        unread = window.unread(ids)[-wanted:]
        for start in range(0, len(unread), FETCH_ROWS):
            if start:
                time.sleep(PAUSE_SECONDS)
            window.add(queries.rows_with_ids(self._engine, unread[start : start + FETCH_ROWS]))

    def report(self) -> dict[str, Any]:
        """What GET /model/drift answers."""
        return {
            "enabled": True,
            "window": {"rows": self._max_rows, "seconds": self._max_seconds},
            "min_rows": self._min_rows,
            "refreshed_at": self._refreshed_at.isoformat() if self._refreshed_at else None,
            "error": self._error,
            "versions": self._report,
        }

    def _publish(self, version: str, features: list[dict[str, Any]], classes: list[dict[str, Any]]) -> None:
        for feature in features:
            metrics.FEATURE_DRIFT_PSI.labels(feature["name"], version).set(feature["psi"])
            metrics.FEATURE_DRIFT_KS.labels(feature["name"], version).set(feature["ks"])
        for item in classes:
            ratio = item["ratio"]
            metrics.PREDICTED_CLASS_RATIO.labels(item["class"], version).set(
                float("nan") if ratio is None else ratio
            )
        self._published[version] = (tuple(f["name"] for f in features), tuple(c["class"] for c in classes))

    def _retire(self, version: str) -> None:
        """NaN for a version's numbers: no longer served, or its window too thin for them."""
        if version not in self._published:
            return
        names, classes = self._published.pop(version)
        nan = float("nan")
        for name in names:
            metrics.FEATURE_DRIFT_PSI.labels(name, version).set(nan)
            metrics.FEATURE_DRIFT_KS.labels(name, version).set(nan)
        for label in classes:
            metrics.PREDICTED_CLASS_RATIO.labels(label, version).set(nan)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else np.nan


def _epoch(moment: datetime) -> float:
    """Row times read back: SQLite returns them without a zone (they are written in UTC)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
