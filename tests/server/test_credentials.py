"""Credentials are read and vetted once, at start-up: unusable ones and the published placeholders
(outside ENVIRONMENT=local) stop the server before it serves anything."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from server.edge.credentials import PUBLISHED_EXAMPLE_KEYS, digest, parse_api_keys
from server.settings import ServerSettings, describe_invalid_settings

REPO = Path(__file__).resolve().parents[2]
REAL_DIGEST = digest("a-real-key-made-with-secrets-token-urlsafe")
REAL_HS256_KEY = "0123456789abcdef0123456789abcdef-real"


def shipped_api_keys_line() -> str:
    """The API_KEYS line .env.example ships."""
    line = next(
        line for line in (REPO / ".env.example").read_text().splitlines() if line.startswith("API_KEYS=")
    )
    return line.removeprefix("API_KEYS=")


def shipped_api_keys_file() -> str:
    """The `api-keys` file k8s/secrets.yaml ships (its block scalar, dedented)."""
    text = (REPO / "k8s" / "secrets.yaml").read_text()
    block = re.search(r"  api-keys: \|\n((?:    .*\n)+)", text)
    assert block is not None, "k8s/secrets.yaml no longer has an api-keys block"
    return "\n".join(line[4:] for line in block[1].splitlines())


def _refusal(**settings: object) -> str:
    with pytest.raises(ValidationError) as raised:
        ServerSettings(**settings)
    return describe_invalid_settings(raised.value)


def test_the_shipped_example_keys_are_the_published_placeholder() -> None:
    shipped = {key.digest for key in parse_api_keys(shipped_api_keys_line())}
    shipped |= {key.digest for key in parse_api_keys(shipped_api_keys_file())}
    assert shipped == {digest(key) for key in PUBLISHED_EXAMPLE_KEYS}


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_the_example_key_inline_is_refused_outside_local_use(environment: str) -> None:
    message = _refusal(environment=environment, auth_enabled=True, api_keys=shipped_api_keys_line())
    assert (
        message
        == f"API key 'local-admin' is the published example key; make a real one (ENVIRONMENT={environment})"
    )


def test_the_example_key_in_a_keys_file_is_refused_outside_local_use(tmp_path: Path) -> None:
    keys = tmp_path / "api-keys"
    keys.write_text(shipped_api_keys_file())
    message = _refusal(environment="production", auth_enabled=True, api_keys_file=keys)
    assert message == "API key 'ops' is the published example key; make a real one (ENVIRONMENT=production)"


def test_the_example_key_is_refused_even_with_auth_off() -> None:
    assert "published example key" in _refusal(environment="production", api_keys=shipped_api_keys_line())


def test_the_example_key_is_accepted_for_local_use() -> None:
    assert ServerSettings(
        environment="local", auth_enabled=True, api_keys=shipped_api_keys_line()
    ).auth_enabled


def test_real_keys_are_accepted_in_production(tmp_path: Path) -> None:
    keys = tmp_path / "api-keys"
    keys.write_text(f"# comment\nops:{REAL_DIGEST}:predict+admin\n")
    settings = ServerSettings(environment="production", auth_enabled=True, api_keys_file=keys)
    (key,) = settings.vetted_credentials().api_keys
    assert (key.name, key.digest, key.scopes) == ("ops", REAL_DIGEST, frozenset({"predict", "admin"}))


def test_a_keys_file_that_cannot_be_read_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    assert _refusal(auth_enabled=True, api_keys_file=missing) == (
        f"API_KEYS_FILE {missing} cannot be read: No such file or directory"
    )


def test_a_malformed_keys_file_is_refused_at_start(tmp_path: Path) -> None:
    keys = tmp_path / "api-keys"
    keys.write_text("ops:not-a-digest:predict\n")
    assert _refusal(auth_enabled=True, api_keys_file=keys) == (
        "each API key must be name:sha256-hex-digest:scopes (never the key itself)"
    )


@pytest.mark.parametrize("environment", ["local", "production"])
def test_an_empty_jwt_key_file_is_refused(tmp_path: Path, environment: str) -> None:
    key = tmp_path / "jwt-key"
    key.write_text("\n")
    assert (
        _refusal(environment=environment, jwt_algorithm="HS256", jwt_key_file=key) == "JWT_KEY_FILE is empty"
    )


def test_a_missing_jwt_key_file_is_refused(tmp_path: Path) -> None:
    assert "JWT_KEY_FILE" in _refusal(jwt_algorithm="HS256", jwt_key_file=tmp_path / "absent")


@pytest.mark.parametrize("source", ["inline", "file"])
def test_a_placeholder_jwt_key_is_refused_outside_local_use(tmp_path: Path, source: str) -> None:
    placeholder = "change-me-jwt-secret-0123456789abcdef"
    if source == "inline":
        message = _refusal(environment="production", jwt_algorithm="HS256", jwt_key=placeholder)
        assert message == "JWT_KEY still holds its placeholder (ENVIRONMENT=production)"
    else:
        key = tmp_path / "jwt-key"
        key.write_text(placeholder)
        message = _refusal(environment="production", jwt_algorithm="HS256", jwt_key_file=key)
        assert message == "JWT_KEY_FILE still holds its placeholder (ENVIRONMENT=production)"


def test_a_short_hs256_key_is_refused_outside_local_use() -> None:
    message = _refusal(environment="production", jwt_algorithm="HS256", jwt_key="short-secret")
    assert message == "JWT_KEY is shorter than 32 bytes, too short for HS256 (ENVIRONMENT=production)"
    assert ServerSettings(environment="production", jwt_algorithm="HS256", jwt_key=REAL_HS256_KEY).jwt_key


def test_an_rs256_key_must_be_a_pem_key() -> None:
    message = _refusal(jwt_algorithm="RS256", jwt_key="not a PEM key")
    assert message == "JWT_KEY is not usable for RS256: it must be an RSA public key in PEM format"


def test_an_hs256_secret_that_is_a_public_key_is_refused() -> None:
    """PyJWT refuses an HMAC secret that is a PEM public key: the classic algorithm-confusion setup."""
    public = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    message = _refusal(jwt_algorithm="HS256", jwt_key=public)
    assert message == "JWT_KEY is not usable for HS256: it must be a plain shared secret"


def test_refusals_never_quote_the_secret() -> None:
    secret = "change-me-and-this-is-secret-0123456789"
    with pytest.raises(ValidationError) as raised:
        ServerSettings(environment="production", jwt_algorithm="HS256", jwt_key=secret)
    assert secret not in describe_invalid_settings(raised.value)


def test_the_digest_command_prints_what_api_keys_holds() -> None:
    """`printf %s "$KEY" | python -m server.edge.auth`: the key comes on standard input."""
    key = "a-key-made-for-this-test"
    result = subprocess.run(
        [sys.executable, "-m", "server.edge.auth"], input=key, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == digest(key)
