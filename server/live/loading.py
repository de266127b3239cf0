"""Resolving a model URI in the MLflow registry, downloading and loading it.

Resolution is cheap (registry calls only) and pins a version, so the download that follows
cannot race an alias move; the live-promotion follower resolves often and loads rarely.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from model_wrapper import FEATURE_NAMES, save_classifier
from model_wrapper.estimator_io import load_estimator
from model_wrapper.reference_profile import PROFILE_ARTIFACT, ReferenceProfile
from server.live.loaded_model import LoadedModel, ModelSource, build_loaded_model
from server.live.mlflow_models import load_pyfunc
from server.live.model_requirements import unmet_requirements

logger = logging.getLogger(__name__)

_REGISTRY_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))")
_RUN_URI = re.compile(r"runs:/(?P<run_id>[^/]+)/.+")
DEFAULT_CLASS_NAMES = ("malignant", "benign")


@dataclass(frozen=True)
class RegistryReference:
    """`models:/NAME@ALIAS` or `models:/NAME/VERSION`, taken apart."""

    name: str
    alias: str | None
    version: str | None


def parse_registry_uri(uri: str) -> RegistryReference | None:
    match = _REGISTRY_URI.fullmatch(uri)
    if match is None:
        return None
    return RegistryReference(match["name"], match["alias"], match["version"])


class ModelLoadError(RuntimeError):
    """A model could not be resolved or loaded; the message is one line for the operator."""


class AliasNotSet(ModelLoadError):
    """The registry answered: no such alias (or no such registered model)."""


def one_line(error: BaseException) -> str:
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    return text.strip().splitlines()[0][:500] if text.strip() else type(error).__name__


class ModelLoader:
    """Turns a model URI into a `LoadedModel`, talking to one tracking server."""

    def __init__(self, tracking_uri: str | None, work_dir: Path | None = None) -> None:
        self._tracking_uri = tracking_uri
        self._work_dir = work_dir

    @cached_property
    def client(self) -> MlflowClient:
        """Made on first use: serving MODEL_PATH never touches a registry, and with no tracking
        URI MLflow's default store is a SQLite file that the API image (mlflow-skinny) lacks."""
        return MlflowClient(tracking_uri=self._tracking_uri, registry_uri=self._tracking_uri)

    def resolve(self, uri: str) -> ModelSource:
        """What `uri` names right now, as a pinned version where it is a registry URI."""
        reference = parse_registry_uri(uri)
        if reference is None:
            run = _RUN_URI.fullmatch(uri)
            if run is None:
                return ModelSource(uri=uri, download_uri=uri)
            metrics = self.client.get_run(run["run_id"]).data.metrics
            return ModelSource(uri=uri, run_id=run["run_id"], download_uri=uri, metrics=dict(metrics))
        if reference.alias is not None:
            version = self.alias_version(reference.name, reference.alias)
        elif reference.version == "latest":
            versions = self.client.search_model_versions(f"name = '{reference.name}'")
            if not versions:
                raise ModelLoadError(f"registered model {reference.name!r} has no versions")
            version = str(max(int(v.version) for v in versions))
        else:
            version = str(reference.version)
        return self.describe(uri, reference.name, version, reference.alias)

    def alias_version(self, name: str, alias: str) -> str:
        """The version `alias` points at: one registry call, the whole cost of a poll. Raises
        `AliasNotSet` when the registry answers that the alias (or the model) does not exist."""
        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException as error:
            if _names_a_missing_alias(error):
                raise AliasNotSet(f"the alias {name}@{alias} is not set in the registry") from None
            raise

    def describe(self, uri: str, name: str, version: str, alias: str | None) -> ModelSource:
        """The registry's facts about one version: run, metrics, where its files are."""
        registered = self.client.get_model_version(name, version)
        run_id = registered.run_id or None
        metrics = self.client.get_run(run_id).data.metrics if run_id else {}
        return ModelSource(
            uri=uri,
            name=name,
            version=str(registered.version),
            alias=alias,
            run_id=run_id,
            download_uri=self.client.get_model_version_download_uri(name, str(registered.version)),
            metrics=dict(metrics),
        )

    def load(self, source: ModelSource) -> LoadedModel:
        """Download `source` into a fresh folder and load it as a pyfunc model."""
        local_dir = Path(tempfile.mkdtemp(prefix="registry-serve-model-", dir=self._work_dir))
        try:
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=source.download_uri or source.uri,
                dst_path=str(local_dir),
                tracking_uri=self._tracking_uri,
            )
            # MLflow's requirement check scans every installed distribution; ours reads
            # the model's own list (server.live.model_requirements).
            pyfunc = load_pyfunc(path)
            python_version = pyfunc.metadata.flavors.get("python_function", {}).get("python_version")
            for problem in unmet_requirements(Path(path), python_version):
                logger.warning("model %s: %s", source.uri, problem)
            return build_loaded_model(source, pyfunc, local_dir, self.reference_profile(source, local_dir))
        except BaseException:
            shutil.rmtree(local_dir, ignore_errors=True)
            raise

    def reference_profile(
        self, source: ModelSource, local_dir: Path
    ) -> tuple[ReferenceProfile | None, str | None]:
        """The training data's profile the version's run carries (`reference_profile.json`, logged by
        `registry_scripts.train`), or None and why: a model logged elsewhere has none, and is
        served all the same, without drift numbers."""
        if source.run_id is None:
            return None, "the model has no registry run to carry a reference profile"
        try:
            listed = {artifact.path for artifact in self.client.list_artifacts(source.run_id)}
            if PROFILE_ARTIFACT not in listed:
                return None, f"its run has no {PROFILE_ARTIFACT} (logged without registry_scripts.train)"
            path = mlflow.artifacts.download_artifacts(
                run_id=source.run_id,
                artifact_path=PROFILE_ARTIFACT,
                dst_path=str(local_dir / "reference"),
                tracking_uri=self._tracking_uri,
            )
        except Exception as error:  # noqa: BLE001 - the model serves without drift numbers all the same
            return None, f"its run's {PROFILE_ARTIFACT} could not be read: {one_line(error)}"
        try:
            profile = ReferenceProfile.from_dict(json.loads(Path(path).read_text()))
        except Exception as error:  # noqa: BLE001 - a document too deep or numbers too large as well
            return None, f"its {PROFILE_ARTIFACT} cannot be used: {one_line(error)}"
        return profile, None

    def load_uri(self, uri: str) -> LoadedModel:
        return self.load(self.resolve(uri))

    def load_local_estimator(
        self,
        path: Path,
        class_names: tuple[str, ...] = DEFAULT_CLASS_NAMES,
        *,
        allow_pickle: bool = False,
    ) -> LoadedModel:
        """Serve a bare scikit-learn file (MODEL_PATH) through the same pyfunc wrapper.

        `.skops` files load with the wrapper's allowlist; anything else goes through joblib,
        which unpickles, so it loads only with `allow_pickle` (ALLOW_PICKLED_MODELS).
        """
        if not path.is_file():
            raise ModelLoadError(f"MODEL_PATH {path} does not exist")
        if path.suffix == ".skops":
            estimator = load_estimator(path)
        elif allow_pickle:
            import joblib  # only this mode needs it (and the scikit-learn it unpickles)

            estimator = joblib.load(path)
        else:
            raise ModelLoadError(
                f"MODEL_PATH {path} is not a .skops file: loading it would unpickle it, which runs "
                "code from the file; save it with skops, or set ALLOW_PICKLED_MODELS=true for a file "
                "you made"
            )
        local_dir = Path(tempfile.mkdtemp(prefix="registry-serve-model-", dir=self._work_dir))
        example = pd.DataFrame(np.zeros((1, len(FEATURE_NAMES))), columns=list(FEATURE_NAMES))
        model_dir = local_dir / "model"
        save_classifier(estimator, model_dir, class_names=class_names, input_example=example)
        return build_loaded_model(
            # Saved just now by this very environment: nothing to check its requirements against.
            ModelSource(uri=str(path)),
            mlflow.pyfunc.load_model(str(model_dir), suppress_warnings=True),
            local_dir,
        )


def _names_a_missing_alias(error: MlflowException) -> bool:
    """MLflow's tracking server answers an unset alias with INVALID_PARAMETER_VALUE ("Registered model
    alias X not found."), an unknown model with RESOURCE_DOES_NOT_EXIST."""
    if error.error_code == "RESOURCE_DOES_NOT_EXIST":
        return True
    return error.error_code == "INVALID_PARAMETER_VALUE" and "not found" in error.message


def load_with_retry(
    load: Callable[[], LoadedModel],
    timeout: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> LoadedModel:
    """Call `load` until it succeeds or `timeout` seconds have passed, backing off between tries.

    A registry that is still starting (as in compose) gets time to come up; anything still
    failing at the deadline raises `ModelLoadError` with the last reason, on one line.
    """
    deadline = clock() + timeout
    delay = 0.5
    attempt = 1
    while True:
        try:
            return load()
        except Exception as error:
            reason = one_line(error)
            if clock() + delay > deadline:
                raise ModelLoadError(
                    f"could not load the model after {attempt} attempt(s): {reason}"
                ) from error
            logger.warning("model load attempt %d failed: %s; retrying in %.1f s", attempt, reason, delay)
            sleep(delay)
            delay = min(delay * 2, 5.0)
            attempt += 1
