"""Point an alias at a version, or roll it back to the version it held before.

python -m registry_scripts.promote 3                 # champion -> version 3
python -m registry_scripts.promote 3 --alias challenger
python -m registry_scripts.promote --rollback        # champion -> its previous version
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mlflow import MlflowClient

from registry_scripts import cli
from registry_scripts.config import DEFAULT_ALIAS, RegistrySettings
from registry_scripts.registry import AliasMove, ModelRegistry


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m registry_scripts.promote",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("version", nargs="?", help="the version to point the alias at")
    parser.add_argument("--alias", default=DEFAULT_ALIAS, help="the alias to move (default: %(default)s)")
    parser.add_argument("--rollback", action="store_true", help="move the alias back to its previous version")
    args = parser.parse_args(argv)
    if bool(args.version) == args.rollback:
        parser.error("give either a VERSION or --rollback")
    return args


def describe(move: AliasMove, model_name: str) -> str:
    before = move.previous if move.previous is not None else "unset"
    return f"{model_name}@{move.alias}: {before} -> {move.current}"


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    settings = RegistrySettings()
    registry = ModelRegistry(MlflowClient(settings.mlflow_tracking_uri), settings.model_name)
    move = registry.rollback(args.alias) if args.rollback else registry.promote(args.version, args.alias)
    print(describe(move, settings.model_name))


if __name__ == "__main__":
    sys.exit(cli.run(main))
