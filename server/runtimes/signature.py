"""A model's input columns, read once from its MLflow signature."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from mlflow.pyfunc import PyFuncModel
from mlflow.types.schema import ColSpec


@dataclass(frozen=True)
class FeatureSpec:
    """One input column of the model's signature."""

    name: str
    type: str
    required: bool


@dataclass(frozen=True)
class Features:
    """The signature's named columns, in order. Runtimes score float64 rows in this order, so they
    take a model only when every column is a double (`all_double`)."""

    specs: tuple[FeatureSpec, ...]

    @cached_property
    def names(self) -> tuple[str, ...]:
        """Made once: every request's path reads it."""
        return tuple(spec.name for spec in self.specs)

    @property
    def all_double(self) -> bool:
        return all(spec.type == "double" for spec in self.specs)

    def __len__(self) -> int:
        return len(self.specs)


def features_of(pyfunc: PyFuncModel) -> Features | None:
    """The named columns of `pyfunc`'s input signature; None for a tensor signature or none."""
    schema = pyfunc.metadata.get_input_schema()
    if schema is None or not schema.has_input_names() or schema.is_tensor_spec():
        return None
    if not all(isinstance(spec, ColSpec) for spec in schema.inputs):
        return None
    return Features(
        tuple(FeatureSpec(s.name, getattr(s.type, "name", str(s.type)), s.required) for s in schema.inputs)
    )
