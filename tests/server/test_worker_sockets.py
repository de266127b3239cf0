"""A socket per worker: what a worker unpickles is a socket of its own in the port's group."""

from __future__ import annotations

import pickle
import socket

import pytest
from uvicorn.config import STARTUP_FAILURE

from registry_scripts.processes import free_port
from server.process import worker_sockets

pytestmark = pytest.mark.skipif(not worker_sockets.AVAILABLE, reason="SO_REUSEPORT balancing is Linux's")


def test_the_supervisor_side_holds_no_socket() -> None:
    assert list(worker_sockets.ReusePortSockets("127.0.0.1", free_port())) == []


def test_each_unpickling_binds_a_socket_of_its_own_on_the_port() -> None:
    port = free_port()
    sent = pickle.dumps(worker_sockets.ReusePortSockets("127.0.0.1", port))

    first, second = pickle.loads(sent), pickle.loads(sent)

    try:
        assert [len(first), len(second)] == [1, 1]
        assert first[0].fileno() != second[0].fileno()
        assert first[0].getsockname() == second[0].getsockname() == ("127.0.0.1", port)
        assert first[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
    finally:
        for sock in first + second:
            sock.close()


def test_a_port_held_without_reuse_port_is_a_start_up_failure_in_the_worker() -> None:
    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        sent = pickle.dumps(worker_sockets.ReusePortSockets("127.0.0.1", port))

        with pytest.raises(SystemExit) as exited:
            pickle.loads(sent)

    assert exited.value.code == STARTUP_FAILURE


def test_a_port_in_use_is_named_before_any_worker_starts() -> None:
    port = free_port()
    assert worker_sockets.port_problem("127.0.0.1", port) is None
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()

        assert worker_sockets.port_problem("127.0.0.1", port) == "Address already in use"
