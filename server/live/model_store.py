"""The model one variant serves right now, replaced as a whole so no request sees half a swap."""

from __future__ import annotations

import shutil
from typing import Literal

from server.errors import ModelNotReady
from server.live.loaded_model import LoadedModel
from server.observe import metrics

Variant = Literal["champion", "challenger"]
CHAMPION: Variant = "champion"
CHALLENGER: Variant = "challenger"


class ModelStore:
    """Holds one variant's current `LoadedModel`; reading it is one attribute load, safe from any
    thread."""

    def __init__(self, model: LoadedModel | None = None, *, variant: Variant = CHAMPION) -> None:
        self.variant: Variant = variant
        self._current: LoadedModel | None = None
        if model is not None:
            self.swap(model)

    @property
    def loaded(self) -> bool:
        return self._current is not None

    @property
    def current(self) -> LoadedModel:
        """The model to serve this request with; requests keep the snapshot they read."""
        model = self._current
        if model is None:
            raise ModelNotReady("no model is loaded yet")
        return model

    def peek(self) -> LoadedModel | None:
        return self._current

    def swap(self, model: LoadedModel) -> LoadedModel | None:
        """Serve `model` from now on; return the one it replaced."""
        previous, self._current = self._current, model
        source = model.source
        metrics.set_model(self.variant, source.name, source.version, source.alias, source.run_id)
        return previous

    def retire(self) -> LoadedModel | None:
        """Serve nothing from now on (a challenger whose alias was removed); return the model that
        was served, whose files the caller removes once requests holding it are done."""
        previous, self._current = self._current, None
        if previous is not None:
            metrics.clear_model(self.variant)
        return previous

    def close(self) -> None:
        """Forget the model and remove its downloaded files."""
        model, self._current = self._current, None
        if model is not None and model.local_dir is not None:
            shutil.rmtree(model.local_dir, ignore_errors=True)
