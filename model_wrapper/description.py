"""What the server needs to describe a model, stored beside the estimator as a JSON artifact.

Keeping it in its own small file lets a server read class names and features without
deserializing the estimator, and keeps the estimator file free of anything but the estimator.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelDescription:
    """Feature order, class values and class names of a fitted classifier."""

    feature_names: tuple[str, ...]
    classes: tuple[int, ...]
    class_names: tuple[str, ...]
    estimator: str

    def __post_init__(self) -> None:
        if len(self.classes) != len(self.class_names):
            raise ValueError(f"{len(self.classes)} classes but {len(self.class_names)} class names")
        if len(set(self.feature_names)) != len(self.feature_names):
            raise ValueError("feature names must be unique")

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> ModelDescription:
        raw = json.loads(Path(path).read_text())
        return cls(
            feature_names=tuple(raw["feature_names"]),
            classes=tuple(int(c) for c in raw["classes"]),
            class_names=tuple(raw["class_names"]),
            estimator=str(raw["estimator"]),
        )
