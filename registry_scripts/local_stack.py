"""`make run`: an embedded tracking server, the default model, and the API, stopped together.

1. starts `mlflow server` on 127.0.0.1:LOCAL_MLFLOW_PORT (SQLite store and artifacts under
   LOCAL_DATA_DIR, kept between runs);
2. trains and promotes the default model when the registry has no `@champion`;
3. serves the API (`python -m server`) in the foreground; Ctrl-C stops all three.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from registry_scripts import cli
from registry_scripts.config import RegistrySettings
from registry_scripts.processes import port_is_free
from registry_scripts.tracking_server import TrackingServer


def main(argv: list[str] | None = None) -> None:
    settings = RegistrySettings()
    if not port_is_free("127.0.0.1", settings.local_mlflow_port):
        raise cli.CliError(
            f"port {settings.local_mlflow_port} is taken; stop what listens there "
            "or set LOCAL_MLFLOW_PORT to another port"
        )
    data_dir = settings.local_data_dir.resolve()
    print(f"starting MLflow on 127.0.0.1:{settings.local_mlflow_port} (data in {data_dir})", file=sys.stderr)
    with TrackingServer(data_dir, port=settings.local_mlflow_port) as server:
        env = {**os.environ, "MLFLOW_TRACKING_URI": server.url}
        print(f"MLflow UI: {server.url}", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "registry_scripts.train", "--if-no-champion"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        api = subprocess.Popen([sys.executable, "-m", "server"], env=env)
        try:
            code = api.wait()
        except KeyboardInterrupt:  # Ctrl-C reached the API too (same process group)
            code = api.wait(timeout=30)
            print("stopped", file=sys.stderr)
        finally:
            if api.poll() is None:
                api.terminate()
                api.wait(timeout=30)
    if code not in (0, -signal.SIGINT, -signal.SIGTERM):
        raise cli.CliError(f"the API exited with code {code}")


if __name__ == "__main__":
    sys.exit(cli.run(main))
