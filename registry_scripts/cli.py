"""What every registry script shares: exit codes and a one-line reason on failure."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from mlflow.exceptions import MlflowException


class CliError(Exception):
    """A failure whose message is meant for the user as it stands."""


def _one_line(error: BaseException) -> str:
    text = error.message if isinstance(error, MlflowException) else str(error)
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return first


def run(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> int:
    """Run a script's `main`; print `error: <reason>` on one line and return 1 if it fails."""
    try:
        main(argv)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the boundary of a command-line tool
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 1
    return 0
