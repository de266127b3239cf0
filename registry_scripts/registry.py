"""Alias moves with history, and version listings, over MLflow's client API.

The history of each alias lives in the registry itself, as a tag on the registered model
(`registry_serve.alias_history.<alias>`: a JSON list of `{"from": v, "to": w}` moves, oldest
first), so a rollback works from any machine that can reach the tracking server. Moves made
elsewhere (the MLflow UI) are not in it; a rollback notices one, because the alias no longer
points where the last recorded move left it, and goes back to that version first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from registry_scripts.cli import CliError

HISTORY_TAG_PREFIX = "registry_serve.alias_history."
HISTORY_LIMIT = 50


@dataclass(frozen=True)
class AliasMove:
    """An alias moved from one version (None when it was unset) to another."""

    alias: str
    previous: str | None
    current: str


@dataclass(frozen=True)
class VersionRow:
    """One line of `registry_scripts.versions`."""

    version: str
    aliases: tuple[str, ...]
    accuracy: float | None
    f1: float | None
    created: datetime


def _is_missing(error: MlflowException) -> bool:
    return error.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)


class ModelRegistry:
    """One registered model in an MLflow model registry."""

    def __init__(self, client: MlflowClient, model_name: str) -> None:
        self._client = client
        self.model_name = model_name

    def alias_version(self, alias: str) -> str | None:
        """The version `alias` points at, or None when it is unset (or the model does not exist)."""
        try:
            aliases = self._client.get_registered_model(self.model_name).aliases
        except MlflowException as error:
            if _is_missing(error):
                return None
            raise
        version = aliases.get(alias)
        return None if version is None else str(version)

    def _require_version(self, version: str) -> ModelVersion:
        try:
            return self._client.get_model_version(self.model_name, version)
        except MlflowException as error:
            if _is_missing(error):
                raise CliError(f"{self.model_name} has no version {version}") from None
            raise

    def _history(self, alias: str) -> list[dict[str, str]]:
        tags = self._client.get_registered_model(self.model_name).tags
        raw = tags.get(HISTORY_TAG_PREFIX + alias)
        return [{"from": str(m["from"]), "to": str(m["to"])} for m in json.loads(raw)] if raw else []

    def _save_history(self, alias: str, history: list[dict[str, str]]) -> None:
        self._client.set_registered_model_tag(
            self.model_name, HISTORY_TAG_PREFIX + alias, json.dumps(history[-HISTORY_LIMIT:])
        )

    def promote(self, version: str, alias: str) -> AliasMove:
        """Point `alias` at `version`, remembering where it pointed for `rollback`."""
        version = str(self._require_version(str(version)).version)
        previous = self.alias_version(alias)
        if previous is not None and previous != version:
            self._save_history(alias, [*self._history(alias), {"from": previous, "to": version}])
        self._client.set_registered_model_alias(self.model_name, alias, version)
        return AliasMove(alias, previous, version)

    def rollback(self, alias: str) -> AliasMove:
        """Point `alias` back at the version it held before it last moved."""
        history = self._history(alias)
        if not history:
            raise CliError(f"no earlier version of {self.model_name}@{alias} is recorded")
        current = self.alias_version(alias)
        last = history[-1]
        if current == last["to"]:
            target, history = last["from"], history[:-1]
        else:  # moved outside these scripts since: back to where the recorded move left it
            target = last["to"]
        self._require_version(target)
        self._client.set_registered_model_alias(self.model_name, alias, target)
        self._save_history(alias, history)
        return AliasMove(alias, current, target)

    def versions(self) -> list[VersionRow]:
        """Every version, newest first, with its aliases and its training run's metrics."""
        found = self._client.search_model_versions(f"name = '{self.model_name}'")
        rows = []
        for summary in sorted(found, key=lambda v: int(v.version), reverse=True):
            version = self._client.get_model_version(self.model_name, summary.version)
            metrics = self._client.get_run(version.run_id).data.metrics if version.run_id else {}
            rows.append(
                VersionRow(
                    version=str(version.version),
                    aliases=tuple(sorted(version.aliases)),
                    accuracy=metrics.get("accuracy"),
                    f1=metrics.get("f1"),
                    created=datetime.fromtimestamp(version.creation_timestamp / 1000, tz=UTC),
                )
            )
        return rows
