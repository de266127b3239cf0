"""`make run`: an embedded tracking server, the default model, and the API, stopped together.

1. starts `mlflow server` on 127.0.0.1:LOCAL_MLFLOW_PORT (SQLite store and artifacts under
   LOCAL_DATA_DIR, kept between runs);
2. trains and promotes the default model when the registry has no `@champion`;
3. serves the API (`python -m server`) until this process gets SIGTERM, SIGINT (Ctrl-C) or SIGHUP,
   or the API exits; then it stops the API and MLflow with everything they started, and exits.

The API and MLflow each run in a process group of their own, which this process signals as a
whole: a signal sent to this process alone (a supervisor, `docker stop`, `kill`) stops everything
just as Ctrl-C to the terminal's process group does. Every child also inherits STACK_MARKER in its
environment, a value unique to this run, and anything still carrying it at the end (a process that
left its group, one started while the signal arrived) is stopped too. A stop signal this process
inherited as ignored (SIGHUP under `nohup`) stays ignored.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from types import FrameType

from registry_scripts import cli
from registry_scripts.config import RegistrySettings
from registry_scripts.processes import port_is_free, stop_group, stop_marked
from registry_scripts.tracking_server import TrackingServer

STACK_MARKER = "REGISTRY_SERVE_STACK"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# The API finishes requests in flight for up to 30 s after SIGTERM (`python -m server`).
API_STOP_SECONDS = 40


class Stopped(BaseException):
    """One of STOP_SIGNALS arrived: stop the stack (a BaseException, as KeyboardInterrupt is, so
    that no `except Exception` on the way swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _ignore_stop_signals() -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    # Once: a second Ctrl-C must not cut the clean-up short (each step has its own time limit).
    _ignore_stop_signals()
    raise Stopped(signum)


def main(argv: list[str] | None = None) -> None:
    settings = RegistrySettings()
    if not port_is_free("127.0.0.1", settings.local_mlflow_port):
        raise cli.CliError(
            f"port {settings.local_mlflow_port} is taken; stop what listens there "
            "or set LOCAL_MLFLOW_PORT to another port"
        )
    data_dir = settings.local_data_dir.resolve()
    marker = f"{os.getpid()}-{secrets.token_hex(8)}"
    server = TrackingServer(data_dir, port=settings.local_mlflow_port, env={STACK_MARKER: marker})
    api: subprocess.Popen[bytes] | None = None
    code: int | None = None
    try:
        for sig in STOP_SIGNALS:
            if signal.getsignal(sig) != signal.SIG_IGN:
                signal.signal(sig, _raise_stopped)
        print(f"starting MLflow on {server.url} (data in {data_dir})", file=sys.stderr)
        server.start()
        env = {**os.environ, "MLFLOW_TRACKING_URI": server.url, STACK_MARKER: marker}
        if env.get("MODEL_URI", "models:/").startswith("models:/"):
            # `@challenger` is followed by default: set it in the MLflow UI and the API serves it
            # beside the champion (CHALLENGER_ALIAS= turns that off).
            env.setdefault("CHALLENGER_ALIAS", "challenger")
        # Every prediction is logged, and drift computed from the log, in a SQLite file beside
        # MLflow's data (PREDICTION_LOG_URL= turns that off).
        env.setdefault("PREDICTION_LOG_URL", f"sqlite:///{data_dir / 'predictions.db'}")
        print(f"MLflow UI: {server.url}", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "registry_scripts.train", "--if-no-champion"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # Its own session: signals reach it only through this process, which then waits for it.
        api = subprocess.Popen([sys.executable, "-m", "server"], env=env, start_new_session=True)
        code = api.wait()
    except Stopped as stop:
        print(f"{stop}: stopping", file=sys.stderr)
    finally:
        # Not contextlib.suppress: a signal could land while its context is being entered.
        try:  # noqa: SIM105
            _ignore_stop_signals()
        except Stopped:  # the first signal, arriving just as the API exited: stopping anyway
            pass
        if api is not None:
            stop_group(api, signal.SIGTERM, API_STOP_SECONDS)
        server.stop()
        escaped = stop_marked(STACK_MARKER, marker)
        if escaped:
            print(f"stopped {len(escaped)} process(es) outside the servers' groups", file=sys.stderr)
    print("stopped", file=sys.stderr)
    if code not in (None, 0, -signal.SIGINT, -signal.SIGTERM):
        raise cli.CliError(f"the API exited with code {code}")


if __name__ == "__main__":
    sys.exit(cli.run(main))
