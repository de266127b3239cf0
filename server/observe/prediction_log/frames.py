"""The messages between a worker and its log writer process, over the writer's stdin and an
acknowledgement pipe: length-prefixed frames, each a one-byte kind and its body.

Worker to writer: HELLO (the writer's settings, JSON: first, once), SLICE (an 8-byte slice number
and a `slices.encode` body), FLUSH (JSON: seconds left to write what waits, then exit).
Writer to worker: ACK (JSON: every slice through `through` is done, `written` of its rows
written; the worker counts the rest as refused) and FAILED (JSON: a write failed and will be
tried again).
"""

from __future__ import annotations

import struct
from typing import BinaryIO

HELLO, SLICE, FLUSH, ACK, FAILED = b"H", b"S", b"F", b"A", b"X"
_LENGTH = struct.Struct("<I")
_SLICE_NUMBER = struct.Struct("<Q")
MAX_FRAME_BYTES = 1 << 30


def frame(kind: bytes, body: bytes) -> bytes:
    return _LENGTH.pack(len(body) + 1) + kind + body


def slice_frame(number: int, body: bytes) -> bytes:
    return frame(SLICE, _SLICE_NUMBER.pack(number) + body)


def slice_of(body: bytes) -> tuple[int, bytes]:
    """A SLICE frame's body: its number, and the encoded slice."""
    return _SLICE_NUMBER.unpack_from(body)[0], body[_SLICE_NUMBER.size :]


def header_length(header: bytes) -> int:
    """The length of the frame after its 4-byte `header`."""
    (length,) = _LENGTH.unpack(header)
    if not 1 <= length <= MAX_FRAME_BYTES:
        raise ValueError(f"a frame of {length} bytes")
    return length


HEADER_BYTES = _LENGTH.size


def read_frame(stream: BinaryIO) -> tuple[bytes, bytes] | None:
    """The next frame's kind and body from a blocking stream; None at its end."""
    header = _read_exactly(stream, HEADER_BYTES)
    if header is None:
        return None
    payload = _read_exactly(stream, header_length(header))
    if payload is None:
        return None
    return payload[:1], payload[1:]


def _read_exactly(stream: BinaryIO, count: int) -> bytes | None:
    parts = []
    while count:
        part = stream.read(count)
        if not part:
            return None
        parts.append(part)
        count -= len(part)
    return b"".join(parts)
