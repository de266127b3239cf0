"""`python -m server.observe.prediction_log upgrade|current`: migrate the prediction log named by
PREDICTION_LOG_URL, or print its schema revision, as a deployment step of its own."""

from __future__ import annotations

import argparse
import sys

from server.observe.prediction_log.database import open_engine
from server.observe.prediction_log.migrate import current_revision, head_revision, upgrade
from server.settings import ServerSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.observe.prediction_log", description=__doc__)
    parser.add_argument("action", choices=["upgrade", "current"])
    args = parser.parse_args(argv)
    url = ServerSettings().prediction_log_dsn()
    if url is None:
        print("PREDICTION_LOG_URL is not set", file=sys.stderr)
        return 2
    engine = open_engine(url)
    try:
        if args.action == "upgrade":
            upgrade(engine)
        with engine.connect() as connection:
            print(f"current: {current_revision(connection) or 'none'}; this server writes: {head_revision()}")
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
