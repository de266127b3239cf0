"""`make run`'s stack: tracking server, default model when the registry is empty, API.

Whatever stops it (Ctrl-C to the terminal's process group, SIGTERM, SIGINT or SIGHUP to the
launcher alone as a supervisor or `kill` sends them, SIGTERM to `make` itself, the API dying)
must leave no process behind: a survivor holds ports 5000 and 8000 and the next `make run` fails.
Each test records the launcher's whole process tree while it serves, and afterwards finds none
of it alive, no process carrying the run's marker, and both ports free.

The tests share one data folder: the first stack trains the default model, the others find
`@champion` and train nothing (each checks that version 1 is served).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from registry_scripts.dataset import load_frame
from registry_scripts.local_stack import STACK_MARKER
from registry_scripts.processes import free_port, port_is_free, stop_marked, wait_until_healthy
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = [sys.executable, "-m", "registry_scripts.local_stack"]
# Runs a command with the stop signals at their defaults, whatever this process inherited: under
# `nohup` SIGHUP is ignored, an ignored signal stays ignored across exec, and the launcher honours it.
DEFAULT_SIGNALS_EXEC = [
    sys.executable,
    "-c",
    "import os, signal, sys\n"
    "for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP): signal.signal(sig, signal.SIG_DFL)\n"
    "os.execvp(sys.argv[1], sys.argv[1:])",
]
# Generous for a loaded machine: stopping takes seconds, but the first start trains the model.
READY_SECONDS = 300
STOP_SECONDS = 90


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack") / "data"


def _env(data_dir: Path, mlflow_port: int, api_port: int, **settings: str) -> dict[str, str]:
    """This process's environment without MLflow, model or API settings (`make run`'s defaults) and
    without the flags of a `make` running these tests."""
    left_out = ("MLFLOW_", "MODEL_", "API_", "MAKE", "MFLAGS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(left_out)}
    env.update(
        LOCAL_MLFLOW_PORT=str(mlflow_port),
        LOCAL_DATA_DIR=str(data_dir),
        API_PORT=str(api_port),
        PYTHONWARNINGS="ignore",
        **settings,
    )
    return env


class Stack:
    """A launcher (`python -m registry_scripts.local_stack`, or `make run`) in a session of its own."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log_path = log
        self.mlflow_port = int(env["LOCAL_MLFLOW_PORT"])
        self.api_port = int(env["API_PORT"])
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*DEFAULT_SIGNALS_EXEC, *command],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.tree: list[psutil.Process] = []
        self.marker: str | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_serving(self) -> None:
        """Wait for the API's /ping, check version 1 is served, and record the process tree."""
        wait_until_healthy(f"http://127.0.0.1:{self.api_port}/ping", READY_SECONDS, self.process)
        assert httpx.get(f"http://127.0.0.1:{self.api_port}/health").json()["model_version"] == "1"
        self.tree = psutil.Process(self.process.pid).children(recursive=True)
        # The launcher (the root, or make's child) gives the marker to everything it starts.
        launched = [p for p in self.tree if not _contains(p.cmdline(), LAUNCHER[1:])]
        markers = {_environ(p).get(STACK_MARKER) for p in launched}
        assert None not in markers, f"not every process is marked: {_describe(launched)}"
        assert len(markers) == 1, markers
        self.marker = markers.pop()

    def process_named(self, *words: str) -> psutil.Process:
        """The one recorded process whose command line contains `words` in sequence."""
        found = [p for p in self.tree if _contains(p.cmdline(), list(words))]
        assert len(found) == 1, f"{words}: {[p.cmdline() for p in self.tree]}"
        return found[0]

    def assert_nothing_left(self) -> None:
        """Nothing of the recorded tree, nothing marked, and both ports free."""
        left = [p for p in self.tree if _alive(p)] + _marked(self.marker)
        assert not left, f"left running: {_describe(left)}\n{self.log()}"
        assert port_is_free("127.0.0.1", self.mlflow_port), "MLflow's port is still taken"
        assert port_is_free("127.0.0.1", self.api_port), "the API's port is still taken"

    def kill_leftovers(self) -> None:
        """After a failure: nothing this test started may outlive it."""
        if self.process.poll() is None:
            self.process.kill()
        for process in [*self.tree, *_marked(self.marker)]:
            with contextlib.suppress(psutil.Error):
                process.kill()
        self.process.wait(timeout=STOP_SECONDS)


def _contains(cmdline: list[str], words: list[str]) -> bool:
    return any(cmdline[i : i + len(words)] == words for i in range(len(cmdline)))


def _environ(process: psutil.Process) -> dict[str, str]:
    try:
        return process.environ()
    except psutil.Error:
        return {}


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _marked(marker: str | None) -> list[psutil.Process]:
    if marker is None:
        return []
    return [p for p in psutil.process_iter() if _environ(p).get(STACK_MARKER) == marker and _alive(p)]


def _describe(processes: list[psutil.Process]) -> list[str]:
    described = []
    for process in processes:
        try:
            described.append(f"{process.pid} {' '.join(process.cmdline())[:150]}")
        except psutil.Error:
            described.append(str(process.pid))
    return described


def test_ctrl_c_to_the_process_group_stops_everything(data_dir: Path, tmp_path: Path) -> None:
    stack = Stack(LAUNCHER, _env(data_dir, free_port(), free_port()), tmp_path / "stack.log")
    try:
        stack.wait_serving()
        os.killpg(stack.process.pid, signal.SIGINT)
        code = stack.process.wait(timeout=STOP_SECONDS)
        stack.assert_nothing_left()
        assert code == 0, stack.log()
    finally:
        stack.kill_leftovers()
    assert (data_dir / "mlflow.db").is_file()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_to_the_launcher_alone_stops_everything(
    sig: signal.Signals, data_dir: Path, tmp_path: Path
) -> None:
    stack = Stack(LAUNCHER, _env(data_dir, free_port(), free_port()), tmp_path / "stack.log")
    try:
        stack.wait_serving()
        os.kill(stack.process.pid, sig)
        code = stack.process.wait(timeout=STOP_SECONDS)
        stack.assert_nothing_left()
        assert code == 0, stack.log()
        assert stack.log().rstrip().endswith("stopped")
    finally:
        stack.kill_leftovers()


def test_make_run_serves_on_loopback_only_and_stops_on_sigterm_to_make(
    data_dir: Path, tmp_path: Path
) -> None:
    # `-o`: never reinstall from here; PY: the interpreter running these tests.
    command = ["make", "--no-print-directory", "-o", ".venv/.installed", "run", f"PY={sys.executable}"]
    stack = Stack(command, _env(data_dir, free_port(), free_port()), tmp_path / "make.log")
    try:
        stack.wait_serving()
        launcher = stack.process_named("-m", "registry_scripts.local_stack")
        assert launcher.ppid() == stack.process.pid, "the launcher is not make's own child"
        api = stack.process_named("-m", "server")
        listening = {
            conn.laddr.ip
            for process in [api, *api.children(recursive=True)]
            for conn in process.net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == stack.api_port
        }
        assert listening == {"127.0.0.1"}
        # README: `make run` follows @challenger (split, 10%) until CHALLENGER_ALIAS= turns it off.
        variants = httpx.get(f"http://127.0.0.1:{stack.api_port}/model/variants", timeout=30).json()
        assert (variants["mode"], variants["percent"]) == ("split", 10.0)
        challenger = variants["variants"][1]
        assert (challenger["variant"], challenger["state"], challenger["model_uri"]) == (
            "challenger",
            "absent",
            "models:/breast-cancer-classifier@challenger",
        )
        # README: `make run` logs every prediction to .data/predictions.db, and computes drift.
        api_url = f"http://127.0.0.1:{stack.api_port}"
        example = {name: float(value) for name, value in load_frame()[0].iloc[0].items()}
        sent = httpx.post(
            f"{api_url}/predict", json=example, headers={"x-request-id": "make-run-1"}, timeout=30
        )
        assert sent.status_code == 200
        assert httpx.get(f"{api_url}/model/drift", timeout=30).json()["enabled"] is True

        def logged() -> list[dict[str, object]]:
            query = {"request_id": "make-run-1"}
            return httpx.get(f"{api_url}/predictions", params=query, timeout=30).json()["predictions"]

        wait_for(lambda: len(logged()) == 1, timeout=30, what="the prediction in the log")
        assert logged()[0]["features"] == example
        assert (data_dir / "predictions.db").is_file()
        os.kill(stack.process.pid, signal.SIGTERM)  # make passes SIGTERM on to the launcher
        code = stack.process.wait(timeout=STOP_SECONDS)
        stack.assert_nothing_left()
        assert code == -signal.SIGTERM, stack.log()  # make ends itself with the signal it got
    finally:
        stack.kill_leftovers()


def test_the_api_dying_stops_the_rest(data_dir: Path, tmp_path: Path) -> None:
    # Two workers: SIGKILL to the API's supervisor alone leaves them, each holding the port.
    env = _env(data_dir, free_port(), free_port(), WORKERS="2")
    stack = Stack(LAUNCHER, env, tmp_path / "stack.log")
    try:
        stack.wait_serving()
        stack.process_named("-m", "server").kill()
        code = stack.process.wait(timeout=STOP_SECONDS)
        stack.assert_nothing_left()
        assert code == 1
        assert stack.log().rstrip().endswith("error: the API exited with code -9")
    finally:
        stack.kill_leftovers()


def test_the_sweep_stops_a_marked_process_outside_every_group() -> None:
    """The launcher's last step reaches what signals to the groups cannot: a process in a session of
    its own (as MLflow's executor engine starts its jobs), here one that also ignores SIGTERM."""
    marker = secrets.token_hex(8)
    script = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)"
    )
    escaped = subprocess.Popen(
        [sys.executable, "-c", script],
        env={**os.environ, STACK_MARKER: marker},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert escaped.stdout is not None
        assert escaped.stdout.readline() == "ready\n"
        assert stop_marked(STACK_MARKER, marker, timeout=1) == [escaped.pid]
        assert escaped.wait(timeout=30) == -signal.SIGKILL
    finally:
        if escaped.poll() is None:
            escaped.kill()
            escaped.wait()


def test_stack_refuses_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            LAUNCHER, env=_env(tmp_path, port, free_port()), capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: port {port} is taken")
