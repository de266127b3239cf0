"""`registry_scripts.versions` and the scripts' `--help`."""

from __future__ import annotations

import re

import pytest

from tests.helpers import run_module, run_ok


def test_versions_prints_one_row_per_version_newest_first(model_env: dict[str, str]) -> None:
    run_ok("registry_scripts.train", env=model_env)
    run_ok("registry_scripts.train", "--model-type", "random_forest", env=model_env)
    lines = run_ok("registry_scripts.versions", env=model_env).splitlines()
    assert lines[0].split() == ["version", "aliases", "accuracy", "f1", "created"]
    row = r"(\d+)\s+(\S+)\s+(0\.\d{4}|1\.0000)\s+(0\.\d{4}|1\.0000)\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"
    parsed = [re.fullmatch(row, line).groups()[:2] for line in lines[1:]]
    assert parsed == [("2", "-"), ("1", "champion")]


def test_versions_of_an_unknown_model_fails(model_env: dict[str, str]) -> None:
    result = run_module("registry_scripts.versions", env=model_env)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {model_env['MODEL_NAME']} has no versions"


@pytest.mark.parametrize(
    "module", ["registry_scripts.train", "registry_scripts.promote", "registry_scripts.versions"]
)
def test_every_script_has_help(module: str, base_env: dict[str, str]) -> None:
    result = run_module(module, "--help", env=base_env)
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: python -m {module}")
