"""Print the registered model's versions: version, aliases, accuracy, f1, created.

python -m registry_scripts.versions
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mlflow import MlflowClient

from registry_scripts import cli
from registry_scripts.config import RegistrySettings
from registry_scripts.registry import ModelRegistry, VersionRow

HEADERS = ("version", "aliases", "accuracy", "f1", "created")


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_table(rows: list[VersionRow]) -> str:
    """A plain-text table with aligned columns, one line per version."""
    cells = [
        (
            r.version,
            ",".join(r.aliases) or "-",
            _metric(r.accuracy),
            _metric(r.f1),
            r.created.strftime("%Y-%m-%d %H:%M:%S UTC"),
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in column) for column in zip(HEADERS, *cells, strict=False)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in (HEADERS, *cells)
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    argparse.ArgumentParser(
        prog="python -m registry_scripts.versions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args(argv)
    settings = RegistrySettings()
    rows = ModelRegistry(MlflowClient(settings.mlflow_tracking_uri), settings.model_name).versions()
    if not rows:
        raise cli.CliError(f"{settings.model_name} has no versions")
    print(format_table(rows))


if __name__ == "__main__":
    sys.exit(cli.run(main))
