"""Whether this process satisfies what a model was logged with: the check `mlflow.pyfunc.load_model`
makes, limited to the packages the model names.

MLflow's own check first maps every module of every installed distribution to its package,
reading each distribution's file list, on every start and every hot swap. A model's
`requirements.txt` names its packages already, so looking those few up gives the same verdict.
Mismatches are warnings, as in MLflow: the gate's test prediction decides whether a version serves.

A package counts as installed when its module is, whichever distribution brought it: the
`xgboost-cpu` distribution provides the `xgboost` module a model's `xgboost==X` asks for.
"""

from __future__ import annotations

import sys
from importlib import metadata, util
from pathlib import Path

import mlflow
from packaging.requirements import InvalidRequirement, Requirement

# The API image installs MLflow's client as `mlflow-skinny`; either satisfies `mlflow==X`.
_MLFLOW_DISTRIBUTIONS = frozenset({"mlflow", "mlflow-skinny"})


def _installed_version(name: str) -> str | None:
    if name.lower() in _MLFLOW_DISTRIBUTIONS:
        return mlflow.__version__
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return _module_version(name)


def _module_version(name: str) -> str | None:
    """The version of the module a distribution's name stands for, installed under another
    distribution's name: read from the module when loading the model imported it already, else
    `""` (present, version unknown) when it can be found, else None."""
    module_name = name.lower().replace("-", "_")
    module = sys.modules.get(module_name)
    if module is not None:
        return str(getattr(module, "__version__", ""))
    try:
        return "" if util.find_spec(module_name) is not None else None
    except (ImportError, ValueError):
        return None


def _requirement_lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("-")]  # options, `-r` includes


def unmet_requirements(model_dir: Path, python_version: str | None) -> list[str]:
    """One line per requirement of the model that this environment does not meet."""
    problems = []
    if python_version:
        logged = tuple(python_version.split(".")[:2])
        running = (str(sys.version_info.major), str(sys.version_info.minor))
        if logged != running:
            problems.append(f"the model was logged with Python {python_version}, this is {'.'.join(running)}")
    for line in _requirement_lines(model_dir / "requirements.txt"):
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue  # URLs and paths: nothing to compare a version with
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        installed = _installed_version(requirement.name)
        if installed is None:
            problems.append(f"{line}: {requirement.name} is not installed")
        elif installed and not requirement.specifier.contains(installed, prereleases=True):
            problems.append(f"{line}: {installed} is installed")
    return problems
