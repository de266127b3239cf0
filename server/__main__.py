"""`python -m server`: load the model (fail fast, one line), then serve with uvicorn.
`python -m server migrate`: bring the prediction log's schema (PREDICTION_LOG_URL) to this
server's revision and exit, for deployments that migrate as a step of their own
(PREDICTION_LOG_MIGRATE=false).

With WORKERS=1 the model loaded here is the one served. With more workers, each worker loads
its own copy (processes share no memory); this process first checks the model loads at all, so
a bad configuration still ends here with one line, and gives the workers a fresh shared folder:
prometheus-client's multiprocess files, so their metrics add up, the reload signal file, so
a webhook delivered to one worker reaches all of them, and the webhook delivery ledger, so a
delivery accepted by one worker is refused as a replay by the others. Each worker listens on a
socket of its own (`server.process.worker_sockets`) unless REUSE_PORT is false, and the supervisor clears
the metrics of a worker that dies (`server.process.supervisor`).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from server.live.loading import ModelLoader, ModelLoadError
from server.process import worker_sockets
from server.process.logging_setup import configure_logging
from server.process.mlflow_env import apply_mlflow_client_settings
from server.settings import ServerSettings, describe_invalid_settings


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments not in ([], ["migrate"]):
        print("usage: python -m server [migrate]", file=sys.stderr)
        return 2
    try:
        settings = ServerSettings()
    except ValidationError as error:
        print(f"error: {describe_invalid_settings(error)}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format, access_log=settings.access_log)
    if arguments == ["migrate"]:
        return _migrate(settings)
    apply_mlflow_client_settings(settings)
    if settings.workers > 1:
        shared = Path(tempfile.mkdtemp(prefix="registry-serve-"))
        if settings.prometheus_multiproc_dir is None:
            # Before any worker imports prometheus_client: it reads this once, at import.
            (shared / "metrics").mkdir()
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(shared / "metrics")
        if settings.reload_signal_path is None:
            # A worker that gets a webhook delivery touches this; the others then check at once.
            os.environ["RELOAD_SIGNAL_PATH"] = str(shared / "reload-signal")
        if settings.webhook_ledger_dir is None:
            # Every worker records received webhook delivery ids here, so a replay is refused by all.
            os.environ["WEBHOOK_LEDGER_DIR"] = str(shared / "webhook-deliveries")
        if settings.variant_policy_path is None:
            # PUT /model/variants writes the challenger's mode and share here; every worker follows it.
            os.environ["VARIANT_POLICY_PATH"] = str(shared / "variant-policy.json")
    from server.app import create_app, load_initial_model
    from server.live.model_store import ModelStore

    try:
        model = load_initial_model(settings, ModelLoader(settings.mlflow_tracking_uri))
    except (ModelLoadError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    common = {
        "host": settings.api_host,
        "port": settings.api_port,
        "loop": "uvloop",
        "http": "httptools",
        "log_config": None,
        "access_log": settings.access_log,
        "timeout_graceful_shutdown": 30,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
    }
    if settings.workers == 1:
        uvicorn.run(create_app(settings, store=ModelStore(model)), **common)
    else:
        return _supervise(settings, common)
    return 0


def _migrate(settings: ServerSettings) -> int:
    """Migrate the prediction log to this server's schema revision; print where it stands."""
    url = settings.prediction_log_dsn()
    if url is None:
        print("error: PREDICTION_LOG_URL is not set", file=sys.stderr)
        return 2
    from server.observe.prediction_log.database import open_engine
    from server.observe.prediction_log.migrate import prepare

    engine = open_engine(url)
    try:
        revision = prepare(engine, migrate=True)
    except Exception as error:  # noqa: BLE001 - one line for the operator, as every start-up error
        print(f"error: the prediction log could not be migrated: {type(error).__name__}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"the prediction log's schema is at revision {revision}")
    return 0


def _supervise(settings: ServerSettings, options: dict[str, object]) -> int:
    """uvicorn's worker supervisor, over a socket per worker (REUSE_PORT) or one shared socket."""
    from server.process.supervisor import (
        WorkerSupervisor,  # imports prometheus_client: after its folder is set
    )

    config = uvicorn.Config(
        "server.app:create_app_from_env", factory=True, workers=settings.workers, **options
    )
    if settings.reuse_port and worker_sockets.AVAILABLE:
        # A port another program holds fails here, once, rather than in every worker.
        host, port = settings.api_host, settings.api_port
        problem = worker_sockets.port_problem(host, port)
        if problem is not None:
            print(f"error: cannot listen on {host}:{port}: {problem}", file=sys.stderr)
            return 1
        logging.getLogger("uvicorn.error").info(
            "Serving on %s:%d with %d workers, a socket each (SO_REUSEPORT)", host, port, settings.workers
        )
        WorkerSupervisor(config, sockets=worker_sockets.ReusePortSockets(host, port)).run()
    else:
        sock = config.bind_socket()
        try:
            WorkerSupervisor(config, sockets=[sock]).run()
        finally:
            sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
