"""A model's requirements are checked against this environment by name, as MLflow checks them
(or by module, for a package installed under another distribution's name)."""

from __future__ import annotations

import sys
import types
from importlib import metadata
from pathlib import Path

import mlflow

from server.live.model_requirements import unmet_requirements

RUNNING = f"{sys.version_info.major}.{sys.version_info.minor}"


def _model_dir(tmp_path: Path, *lines: str) -> Path:
    (tmp_path / "requirements.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_requirements_this_environment_meets_give_no_warning(tmp_path: Path) -> None:
    model_dir = _model_dir(
        tmp_path,
        "# written by MLflow",
        f"mlflow=={mlflow.__version__}",
        f"numpy=={metadata.version('numpy')}",
        "pandas>=1",
        "-r constraints.txt",
        "git+https://example.invalid/some/repo.git",
        'scikit-learn==0.0.1; python_version < "3"',
    )
    assert unmet_requirements(model_dir, f"{RUNNING}.0") == []


def test_other_versions_missing_packages_and_python_are_named(tmp_path: Path) -> None:
    numpy = metadata.version("numpy")
    model_dir = _model_dir(tmp_path, "numpy==0.0.1", "no-such-package-registry-serve==1.0")
    assert unmet_requirements(model_dir, "2.7.18") == [
        f"the model was logged with Python 2.7.18, this is {RUNNING}",
        f"numpy==0.0.1: {numpy} is installed",
        "no-such-package-registry-serve==1.0: no-such-package-registry-serve is not installed",
    ]


def test_a_model_without_requirements_is_not_checked(tmp_path: Path) -> None:
    assert unmet_requirements(tmp_path, None) == []


def test_a_module_installed_under_another_distribution_counts_as_installed(
    tmp_path: Path, monkeypatch
) -> None:
    """As `xgboost-cpu` provides the `xgboost` module a model's `xgboost==X` asks for: here a module
    that no distribution of its name provides, imported already (as loading the model imports it)."""
    module = types.ModuleType("registry_serve_elsewhere")
    module.__version__ = "1.2.3"
    monkeypatch.setitem(sys.modules, "registry_serve_elsewhere", module)
    model_dir = _model_dir(tmp_path, "registry-serve-elsewhere==1.2.3", "registry-serve-elsewhere==9")
    assert unmet_requirements(model_dir, None) == ["registry-serve-elsewhere==9: 1.2.3 is installed"]
