"""How the challenger takes part: its mode and share, changed at run time by PUT /model/variants.

With several workers the change is written to a file they share (VARIANT_POLICY_PATH, set by
`python -m server`), which each worker watches; a restart goes back to CHALLENGER_MODE and
CHALLENGER_PERCENT.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import orjson

logger = logging.getLogger(__name__)

Mode = Literal["split", "shadow"]
MODES: tuple[Mode, ...] = ("split", "shadow")


@dataclass(frozen=True)
class SplitPolicy:
    mode: Mode
    percent: float

    # The buckets (of 10,000) the challenger answers in split mode; 0 in shadow mode.
    threshold: int = field(init=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if not 0 <= self.percent <= 100:
            raise ValueError("percent must lie between 0 and 100")
        object.__setattr__(self, "threshold", round(self.percent * 100) if self.mode == "split" else 0)


class SplitPolicyHolder:
    """The policy in force in this process, replaced as a whole. The shared file is compared by
    content, not modification time, so two changes within one timestamp tick are both seen."""

    def __init__(self, initial: SplitPolicy, path: Path | None = None) -> None:
        self.configured = initial
        self.current = initial
        self._path = path
        self._seen: bytes | None = None
        self.refresh()

    def set(self, policy: SplitPolicy) -> None:
        """Apply `policy` here and, through the shared file, in every other worker."""
        self.current = policy
        if self._path is None:
            return
        content = orjson.dumps({"mode": policy.mode, "percent": policy.percent})
        temporary = self._path.with_name(f".{self._path.name}.{os.getpid()}")
        temporary.write_bytes(content)
        temporary.replace(self._path)
        self._seen = content

    def refresh(self) -> None:
        """Pick up a change another worker wrote (a file of a few bytes, read each time)."""
        if self._path is None:
            return
        try:
            content = self._path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as error:
            logger.warning("cannot read the challenger policy in %s: %s", self._path, error)
            return
        if content == self._seen:
            return
        self._seen = content
        try:
            raw = orjson.loads(content)
            self.current = SplitPolicy(raw["mode"], float(raw["percent"]))
        except (ValueError, KeyError, TypeError) as error:
            logger.warning("ignored an unreadable challenger policy in %s: %s", self._path, error)
