"""The configured credentials, read and vetted once at start-up: API key digests and the JWT key.

Settings validation calls `load` so that a server with unusable credentials never starts (one line
saying why), and the authenticator is built from what it returns. Outside ENVIRONMENT=local it also
refuses the placeholders this project publishes (`.env.example`, `k8s/secrets.yaml`): anyone can
read those, so a server accepting them would accept everyone.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

SCOPES = frozenset({"predict", "admin", "metrics"})
PLACEHOLDER_PREFIX = "change-me"
# The example key whose digest .env.example and k8s/secrets.yaml ship.
PUBLISHED_EXAMPLE_KEYS = ("change-me-api-key",)
# RFC 7518 §3.2: an HS256 key must be at least as long as the hash output (256 bits).
MIN_HS256_KEY_BYTES = 32
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class CredentialError(ValueError):
    """The configured credentials cannot be used; the message says which and why, never a secret."""


@dataclass(frozen=True)
class ApiKey:
    """One configured API key: a name for logs and rate limits, its digest and its scopes."""

    name: str
    digest: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class Credentials:
    """Everything the authenticator needs, read from the settings and the files they name."""

    api_keys: tuple[ApiKey, ...]
    jwt_key: str | None = field(repr=False)


def digest(key: str) -> str:
    """The SHA-256 hex digest API_KEYS holds for `key` (`printf %s KEY | python -m server.edge.auth`)."""
    return hashlib.sha256(key.encode()).hexdigest()


_PUBLISHED_DIGESTS = frozenset(digest(key) for key in PUBLISHED_EXAMPLE_KEYS)


def parse_api_keys(text: str) -> tuple[ApiKey, ...]:
    """`name:digest:scope+scope` entries, comma- or newline-separated; a line starting with `#` is
    a comment (commas included)."""
    keys = []
    lines = (line for line in text.splitlines() if not line.strip().startswith("#"))
    for entry in (entry.strip() for line in lines for entry in line.split(",")):
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) != 3 or not _DIGEST.fullmatch(parts[1]):
            raise CredentialError("each API key must be name:sha256-hex-digest:scopes (never the key itself)")
        name, key_digest, scope_text = parts
        scopes = frozenset(scope_text.split("+")) if scope_text else frozenset()
        unknown = scopes - SCOPES
        if unknown:
            raise CredentialError(
                f"API key {name!r} names unknown scopes {sorted(unknown)}; known: {sorted(SCOPES)}"
            )
        keys.append(ApiKey(name, key_digest, scopes))
    return tuple(keys)


def _read(setting: str, path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
        raise CredentialError(f"{setting} {path} cannot be read: {reason}") from None


def load(
    *,
    environment: str,
    api_keys: str | None,
    api_keys_file: Path | None,
    jwt_algorithm: str | None,
    jwt_key: str | None,
    jwt_key_file: Path | None,
) -> Credentials:
    """Read the configured credentials; raise `CredentialError` if any is unusable, or is a
    published placeholder while `environment` is not `local`."""
    keys = parse_api_keys(api_keys or "")
    if api_keys_file is not None:
        keys += parse_api_keys(_read("API_KEYS_FILE", api_keys_file))
    strict = environment != "local"
    if strict:
        for key in keys:
            if key.digest in _PUBLISHED_DIGESTS:
                raise CredentialError(
                    f"API key {key.name!r} is the published example key; make a real one "
                    f"(ENVIRONMENT={environment})"
                )
    key_text = None
    if jwt_algorithm is not None:
        key_text = jwt_key if jwt_key else (_read("JWT_KEY_FILE", jwt_key_file) if jwt_key_file else "")
        source = "JWT_KEY" if jwt_key else "JWT_KEY_FILE"
        if not key_text.strip():
            raise CredentialError(f"{source} is empty")
        if strict and key_text.strip().startswith(PLACEHOLDER_PREFIX):
            raise CredentialError(f"{source} still holds its placeholder (ENVIRONMENT={environment})")
        if strict and jwt_algorithm == "HS256" and len(key_text.encode()) < MIN_HS256_KEY_BYTES:
            raise CredentialError(
                f"{source} is shorter than {MIN_HS256_KEY_BYTES} bytes, too short for HS256 "
                f"(ENVIRONMENT={environment})"
            )
        _check_jwt_key(jwt_algorithm, key_text, source)
    return Credentials(keys, key_text)


def _check_jwt_key(algorithm: str, key: str, source: str) -> None:
    """PyJWT's own preparation of the key: an RS256 key must be a public key in PEM, and an HS256
    secret must not look like one (that would invite algorithm confusion)."""
    from jwt.algorithms import get_default_algorithms
    from jwt.exceptions import InvalidKeyError

    try:
        get_default_algorithms()[algorithm].prepare_key(key)
    except (InvalidKeyError, ValueError, TypeError):
        kind = "an RSA public key in PEM format" if algorithm == "RS256" else "a plain shared secret"
        raise CredentialError(f"{source} is not usable for {algorithm}: it must be {kind}") from None
