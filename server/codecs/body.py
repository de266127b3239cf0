"""Reading a request body within MAX_BODY_BYTES, and checking its content type."""

from __future__ import annotations

from starlette.requests import Request

from server.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

JSON_MEDIA_TYPE = "application/json"


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
    """Strict routes take `application/json` (UTF-8) only."""
    media_type, parameters = split_content_type(header)
    if media_type != JSON_MEDIA_TYPE:
        shown = media_type or "none"
        raise UnsupportedMediaType(f"content type must be {JSON_MEDIA_TYPE}, got {shown}")
    charset = parameters.get("charset", "utf-8").lower()
    if charset != "utf-8":
        raise UnsupportedMediaType(f"charset must be utf-8, got {charset}")
