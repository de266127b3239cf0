"""Answers given before the request's body was read reach the client, against real server processes.

A 413 for a body over MAX_BODY_BYTES, and every refusal given before the body is read (401, 403,
429, 503, 404, 405, 415), used to end in "connection reset by peer" whenever the connection was
to close after the answer (the client sent `Connection: close`, as urllib does): the server
closed with the rest of the body unread in its socket, which makes the kernel send a reset. The
server now reads and discards the rest, up to MAX_DISCARD_BYTES (64 MiB) and for a bounded time,
before it completes such an answer (`server/edge/lingering.py`). Each test here fails without that but
one: httpx keeping its connection, which guards against the easy wrong fix of closing them all.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator

import httpx
import pytest

from registry_scripts.processes import ServerProcess, api_process
from server.edge.credentials import digest
from tests.helpers import wait_for
from tests.registry import FEATURES
from tests.server.metrics_text import sample

MIB = 1024 * 1024
BIG = 20_000_000  # twice MAX_BODY_BYTES (10 MiB), well within MAX_DISCARD_BYTES (64 MiB)
CHUNK = 64 * 1024
ROW = json.dumps({k: float(v) for k, v in FEATURES.iloc[0].items()}).encode()

# The guarded server's keys; each is used by one test only, as each has a single token to spend.
KEYS = {name: f"{name}-key-for-lingering-tests" for name in ("holder", "crowd", "limited", "watcher")}


@pytest.fixture(scope="module")
def guarded(base_env: dict[str, str], champion_uri: str, tmp_path_factory) -> Iterator[ServerProcess]:
    """Authentication on, one request per key (then 429), one prediction in progress at a time."""
    scopes = {"holder": "predict", "crowd": "predict", "limited": "predict", "watcher": "metrics"}
    keys = ",".join(f"{name}:{digest(KEYS[name])}:{scope}" for name, scope in scopes.items())
    settings = {
        "MODEL_URI": champion_uri,
        "AUTH_ENABLED": "true",
        "API_KEYS": keys,
        "RATE_LIMIT_PER_SECOND": "0.001",
        "RATE_LIMIT_BURST": "1",
        "MAX_CONCURRENT_REQUESTS": "1",
    }
    log = tmp_path_factory.mktemp("guarded") / "api.log"
    with api_process(base_env, log, **settings) as server:
        yield server


def _head(path: str, *, length: int | None, content_type: str = "application/json", **headers: str) -> bytes:
    """A request's head: Content-Length framing when `length` is given, chunked otherwise."""
    framing = {"Content-Length": str(length)} if length is not None else {"Transfer-Encoding": "chunked"}
    fields = {"Host": "127.0.0.1", "Content-Type": content_type, **framing, **headers}
    lines = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return f"POST {path} HTTP/1.1\r\n{lines}\r\n".encode()


def _chunked(body: bytes) -> bytes:
    parts = [
        b"%x\r\n%s\r\n" % (len(body[i : i + CHUNK]), body[i : i + CHUNK]) for i in range(0, len(body), CHUNK)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """The next answer on `sock`: status, headers (lower-cased names) and JSON body."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, _lower(response.getheaders()), json.loads(response.read())


def _ends_cleanly(sock: socket.socket) -> bool:
    """Whether the server ends the connection with a FIN (end of stream), not a reset; raises
    ConnectionResetError on a reset, TimeoutError when it keeps the connection open."""
    return sock.recv(1) == b""


def _send_all_then_read(port: int, request: bytes) -> tuple[int, dict[str, str], dict, socket.socket]:
    """What urllib and most simple clients do: the whole request first, only then the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    try:
        sock.sendall(request)  # a reset from the server fails here
        status, headers, body = _read_response(sock)
    except BaseException:
        sock.close()
        raise
    return status, headers, body, sock


def _urlopen(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], dict]:
    """urllib's answer: it sends `Connection: close` and the whole body before reading."""
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, _lower(response.headers.items()), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _lower(error.headers.items()), json.loads(error.read())


def _lower(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def _assert_error(body: dict, error_code: str) -> None:
    """The one error shape of server/errors.py."""
    assert body["error_code"] == error_code
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["request_id"], str)
    assert body["request_id"]


def test_urllib_reads_the_413_for_a_20_mb_body(api_server: ServerProcess) -> None:
    """The finding itself: Python's own client got "connection reset by peer" instead of this."""
    status, _, body = _urlopen(f"{api_server.url}/predict", b"x" * BIG, {"Content-Type": "application/json"})
    assert status == 413
    _assert_error(body, "PAYLOAD_TOO_LARGE")
    assert body["message"] == "request body exceeds the limit of 10485760 bytes"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_client_that_sends_all_20_mb_before_reading_gets_the_413_and_a_clean_close(
    api_server: ServerProcess, chunked: bool
) -> None:
    """A chunked body is refused once 10 MiB have arrived (no length to refuse it by); the rest
    is discarded all the same."""
    body = b"x" * BIG
    head = _head("/predict", length=None if chunked else BIG, Connection="close")
    status, headers, answer, sock = _send_all_then_read(
        api_server.port, head + (_chunked(body) if chunked else body)
    )
    with sock:
        assert status == 413
        _assert_error(answer, "PAYLOAD_TOO_LARGE")
        assert headers["connection"] == "close"
        assert _ends_cleanly(sock)


def test_httpx_reads_the_413_and_keeps_using_its_connection(api: httpx.Client) -> None:
    """A body whose declared rest fits within MAX_DISCARD_BYTES is discarded and the connection
    stays open: closing it would cost every keep-alive client a new connection per refusal."""
    refused = api.post("/predict", content=b"x" * BIG, headers={"Content-Type": "application/json"})
    assert refused.status_code == 413
    _assert_error(refused.json(), "PAYLOAD_TOO_LARGE")
    assert "connection" not in refused.headers
    answered = api.post("/predict", content=ROW, headers={"Content-Type": "application/json"})
    assert answered.status_code == 200
    assert _client_address(answered) == _client_address(refused)  # the same connection


def test_httpx_reads_the_413_for_a_chunked_body_and_goes_on(api: httpx.Client) -> None:
    """How much of a chunked body is left is unknown, so its refusal closes the connection (after
    discarding the rest); the client opens another one for its next request."""

    def chunks() -> Iterator[bytes]:
        for _ in range(BIG // CHUNK):
            yield b"x" * CHUNK

    refused = api.post("/predict", content=chunks(), headers={"Content-Type": "application/json"})
    assert refused.status_code == 413
    _assert_error(refused.json(), "PAYLOAD_TOO_LARGE")
    assert refused.headers["connection"] == "close"
    assert api.post("/predict", content=ROW, headers={"Content-Type": "application/json"}).status_code == 200


def test_after_a_413_a_kept_alive_connection_idles_out_like_any_other(api_server: ServerProcess) -> None:
    """Once the rest of the refused body has been discarded, the connection is an ordinary idle
    one that uvicorn closes after its keep-alive timeout (5 s). When uvicorn discards a body after
    the answer instead (what it does on its own), the arriving body cancels that timeout and nothing
    sets it again: the idle connection stays open for as long as the client likes."""
    request = _head("/predict", length=BIG) + b"x" * BIG
    status, headers, body, sock = _send_all_then_read(api_server.port, request)
    with sock:
        assert status == 413
        _assert_error(body, "PAYLOAD_TOO_LARGE")
        assert "connection" not in headers
        assert _ends_cleanly(sock)


def _client_address(response: httpx.Response) -> tuple[str, int]:
    return response.extensions["network_stream"].get_extra_info("client_addr")


@pytest.mark.parametrize(
    ("path", "content_type", "status", "error_code"),
    [
        ("/no-such-path", "application/json", 404, "NOT_FOUND"),
        ("/health", "application/json", 405, "METHOD_NOT_ALLOWED"),
        ("/predict", "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ],
)
def test_every_early_refusal_of_a_20_mb_body_is_readable(
    api_server: ServerProcess, path: str, content_type: str, status: int, error_code: str
) -> None:
    """The discarding is one mechanism around the whole app, not a special case of the 413."""
    answer = _urlopen(f"{api_server.url}{path}", b"x" * BIG, {"Content-Type": content_type})
    assert answer[0] == status
    _assert_error(answer[2], error_code)


def test_a_401_for_a_20_mb_body_is_readable(guarded: ServerProcess) -> None:
    """Authentication refuses from the headers alone, before a byte of the body is read."""
    status, headers, body = _urlopen(
        f"{guarded.url}/predict", b"x" * BIG, {"Content-Type": "application/json"}
    )
    assert status == 401
    _assert_error(body, "UNAUTHENTICATED")
    assert headers["www-authenticate"].startswith("Bearer")


def test_a_403_for_a_20_mb_body_is_readable(guarded: ServerProcess) -> None:
    """A valid key without the route's scope is refused before the body is read too."""
    headers = {"Content-Type": "application/json", "X-API-Key": KEYS["watcher"]}
    status, _, body = _urlopen(f"{guarded.url}/predict", b"x" * BIG, headers)
    assert status == 403
    _assert_error(body, "FORBIDDEN")


def test_a_429_for_a_20_mb_body_is_readable(guarded: ServerProcess) -> None:
    """A rate-limited client must be able to read its Retry-After, or it cannot back off."""
    headers = {"Content-Type": "application/json", "X-API-Key": KEYS["limited"]}
    first = _urlopen(f"{guarded.url}/predict", b"x" * BIG, headers)  # spends the key's one token
    assert first[0] == 413
    status, answer_headers, body = _urlopen(f"{guarded.url}/predict", b"x" * BIG, headers)
    assert status == 429
    _assert_error(body, "RATE_LIMITED")
    assert int(answer_headers["retry-after"]) > 0


def test_a_503_for_a_20_mb_body_is_readable(guarded: ServerProcess) -> None:
    """One prediction held in progress (its client sends half its body and waits) fills the
    server; the next, a 20 MB body, is refused at once."""
    holder = socket.create_connection(("127.0.0.1", guarded.port), timeout=60)
    with holder:
        holder.sendall(_head("/predict", length=len(ROW), **{"X-API-Key": KEYS["holder"]}) + ROW[:10])

        def in_flight() -> float:
            metrics = httpx.get(f"{guarded.url}/metrics", timeout=30).text
            return sample(metrics, "prediction_requests_in_flight")

        wait_for(lambda: in_flight() == 1, 30, "the held prediction in progress")
        headers = {"Content-Type": "application/json", "X-API-Key": KEYS["crowd"]}
        status, answer_headers, body = _urlopen(f"{guarded.url}/predict", b"x" * BIG, headers)
        assert status == 503
        _assert_error(body, "OVERLOADED")
        assert answer_headers["retry-after"] == "1"
        holder.sendall(ROW[10:])
        assert _read_response(holder)[0] == 200


def test_a_body_far_over_the_bound_is_refused_with_connection_close_while_it_is_sent(
    api_server: ServerProcess,
) -> None:
    """200 MB declared is more than MAX_DISCARD_BYTES: the 413 says `Connection: close` as soon
    as the head is read. A client that reads while it sends (curl does) stops sending there; the
    server discards what was already sent, waits a bounded time for more, then closes cleanly."""
    sock = socket.create_connection(("127.0.0.1", api_server.port), timeout=60)
    with sock:
        sock.sendall(_head("/predict", length=200_000_000))
        sock.setblocking(False)
        sent = 0
        while True:
            readable, writable, _ = select.select([sock], [sock], [], 60)
            if readable:
                break
            assert writable, "neither an answer nor room to send more within 60 s"
            try:
                sent += sock.send(b"x" * CHUNK)
            except BlockingIOError:
                continue
            assert sent < 64 * MIB, "no answer before MAX_DISCARD_BYTES were sent"
        sock.settimeout(60)
        status, headers, body = _read_response(sock)
        assert status == 413
        _assert_error(body, "PAYLOAD_TOO_LARGE")
        assert headers["connection"] == "close"
        assert _ends_cleanly(sock)  # after LINGER_IDLE_SECONDS (5 s) without more of the body


def test_a_body_far_over_the_bound_is_still_discarded_up_to_the_bound(api_server: ServerProcess) -> None:
    """A client that sends 32 MiB of a declared 200 MB before it reads (and then says it is done
    sending) still reads its 413: the server discards up to MAX_DISCARD_BYTES before closing."""
    head = _head("/predict", length=200_000_000, Connection="close")
    status, headers, body, sock = _send_all_then_read(api_server.port, head + b"x" * (32 * MIB))
    with sock:
        assert status == 413
        _assert_error(body, "PAYLOAD_TOO_LARGE")
        assert headers["connection"] == "close"
        sock.shutdown(socket.SHUT_WR)
        assert _ends_cleanly(sock)


def test_the_server_discards_no_more_than_the_bound(api_server: ServerProcess) -> None:
    """The bound protects the server: of a declared 200 MB, sent by a client that never reads, it
    discards MAX_DISCARD_BYTES (64 MiB) and then closes, which that client sees as a reset (as it
    would from nginx). The bytes it got to send are the bound plus what the two sockets' buffers
    held, far from 200 MB."""
    sent = 0

    def send_until_refused() -> None:
        nonlocal sent
        with socket.create_connection(("127.0.0.1", api_server.port), timeout=60) as sock:
            sock.sendall(_head("/predict", length=200_000_000))
            while sent < 200_000_000:
                sent += sock.send(b"x" * CHUNK)

    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        send_until_refused()
    assert 64 * MIB <= sent < 128 * MIB


def test_a_client_that_stops_sending_is_given_up_on_after_the_idle_bound(api_server: ServerProcess) -> None:
    """Discarding waits at most LINGER_IDLE_SECONDS (5 s) for more of the body: a client that sent
    a megabyte of a declared 20 MB and then went quiet has its connection closed (it asked for
    `Connection: close`) after about that long, not after LINGER_SECONDS (30 s) or never. The
    window is wide on purpose: it only tells a 5 s wait from none and from 30 s."""
    request = _head("/predict", length=BIG, Connection="close") + b"x" * MIB
    with socket.create_connection(("127.0.0.1", api_server.port), timeout=60) as sock:
        sock.sendall(request)
        started = time.monotonic()
        status, _, body = _read_response(sock)
        assert status == 413
        _assert_error(body, "PAYLOAD_TOO_LARGE")
        assert _ends_cleanly(sock)
        waited = time.monotonic() - started
    assert 4 <= waited < 25, waited


def test_with_max_discard_bytes_0_nothing_is_discarded_and_the_answer_says_close(
    base_env: dict[str, str], champion_uri: str, tmp_path
) -> None:
    """MAX_DISCARD_BYTES=0: the answer comes at once with `Connection: close`, and the server reads
    nothing more: a client reading while it sends gets it; one that only sends is on its own."""
    settings = {"MODEL_URI": champion_uri, "MAX_DISCARD_BYTES": "0"}
    with (
        api_process(base_env, tmp_path / "api.log", **settings) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock,
    ):
        sock.sendall(_head("/predict", length=BIG) + b"x" * MIB)
        status, headers, body = _read_response(sock)
    assert status == 413
    _assert_error(body, "PAYLOAD_TOO_LARGE")
    assert headers["connection"] == "close"
