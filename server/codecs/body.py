"""Reading a request body within MAX_BODY_BYTES, and checking its content type."""

from __future__ import annotations

from starlette.requests import Request

from server.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

JSON_MEDIA_TYPE = "application/json"
IDENTITY = "identity"


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing early (without buffering it) once it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise BadRequest("Content-Length is not a number") from None
        if length > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def split_content_type(header: str | None) -> tuple[str, dict[str, str]]:
    """`text/csv; charset=utf-8` -> (`text/csv`, {`charset`: `utf-8`}); media type lower-cased."""
    if not header:
        return "", {}
    media_type, *pairs = (part.strip() for part in header.split(";"))
    parameters = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        parameters[key.strip().lower()] = value.strip().strip('"')
    return media_type.lower(), parameters


def require_json(header: str | None) -> None:
    """Strict routes take `application/json` (UTF-8) only. The header is the client's text: the
    answer says what is accepted, never what was sent."""
    media_type, parameters = split_content_type(header)
    if media_type != JSON_MEDIA_TYPE:
        raise UnsupportedMediaType(f"content type must be {JSON_MEDIA_TYPE}")
    charset = parameters.get("charset", "utf-8").lower()
    if charset != "utf-8":
        raise UnsupportedMediaType("charset must be utf-8")


def require_identity_encoding(header: str | None) -> None:
    """Bodies are read as sent: the server decompresses nothing (a compressed body would be a
    second, unbounded size to police). A `Content-Encoding` other than `identity` is refused
    outright rather than misread as a body that is not JSON, CSV or Parquet."""
    if header is not None and header.strip().lower() not in ("", IDENTITY):
        raise UnsupportedMediaType(
            "compressed request bodies are not accepted; send the body with no Content-Encoding"
        )
