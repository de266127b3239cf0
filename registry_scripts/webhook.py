"""Register an MLflow webhook that tells a running server the moment an alias moves.

    python -m registry_scripts.webhook --url http://api:8000/webhooks/mlflow
    python -m registry_scripts.webhook --url … --secret-env MLFLOW_WEBHOOK_SECRET --name prod-api

The webhook fires on `model_version_alias.created` and `.deleted`, signed with the secret the
server verifies (MLFLOW_WEBHOOK_SECRET on both sides). MLflow refuses to deliver to private
addresses, and over plain HTTP, unless its server runs with MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true
and MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https, as it must when the API runs beside it (compose,
Kubernetes). MLflow caches its webhook list for MLFLOW_WEBHOOK_CACHE_TTL seconds (60 by
default), so a new webhook may take that long to fire. Re-running with the same name updates
that webhook.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mlflow import MlflowClient

from registry_scripts import cli
from registry_scripts.config import RegistrySettings

EVENTS = ["model_version_alias.created", "model_version_alias.deleted"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m registry_scripts.webhook",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", required=True, help="the server's /webhooks/mlflow URL")
    parser.add_argument("--name", default="registry-serve", help="webhook name (default: %(default)s)")
    parser.add_argument(
        "--secret-env",
        default="MLFLOW_WEBHOOK_SECRET",
        help="environment variable holding the shared secret (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    secret = os.environ.get(args.secret_env)
    if not secret:
        raise cli.CliError(f"{args.secret_env} is not set: the server refuses unsigned deliveries")
    client = MlflowClient(RegistrySettings().mlflow_tracking_uri)
    existing = [hook for hook in client.list_webhooks() if hook.name == args.name]
    if existing:
        hook = client.update_webhook(existing[0].webhook_id, url=args.url, events=EVENTS, secret=secret)
        verb = "updated"
    else:
        hook = client.create_webhook(name=args.name, url=args.url, events=EVENTS, secret=secret)
        verb = "created"
    print(f"{verb} webhook {hook.name} ({hook.webhook_id}) -> {hook.url}")


if __name__ == "__main__":
    sys.exit(cli.run(main))
