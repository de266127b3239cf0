"""Who is calling, and may they: API keys and JWT bearer tokens, checked against route scopes.

API keys arrive as `Authorization: Bearer <key>` or `X-API-Key: <key>` and are looked up by
their SHA-256 digest: the server holds digests only, never keys, and compares digests in
constant time. A bearer token that is a JWT is verified instead (signature, expiry, issuer,
audience) when JWT_ALGORITHM is set; its scopes come from the `scope` (space-separated) or `scp`
claim. Keys and tokens are never logged.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

import jwt

from server.edge.credentials import SCOPES, Credentials, digest
from server.errors import ServingError

API_KEY_HEADER = "x-api-key"
_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


class Unauthenticated(ServingError):
    status_code = 401
    error_code = "UNAUTHENTICATED"

    def __init__(self, message: str, *, invalid: bool) -> None:
        challenge = 'Bearer realm="registry-serve"' + (', error="invalid_token"' if invalid else "")
        super().__init__(message, headers={"WWW-Authenticate": challenge})


class Forbidden(ServingError):
    status_code = 403
    error_code = "FORBIDDEN"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a name for logs and rate limits, and what it may do."""

    name: str
    scopes: frozenset[str]


class JwtVerifier:
    """Verifies JWTs: signature, `exp` (required), and `iss` / `aud` when configured."""

    def __init__(self, algorithm: str, key: str, issuer: str | None, audience: str | None) -> None:
        self._algorithm = algorithm
        self._key = key
        self._issuer = issuer
        self._audience = audience

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired", invalid=True) from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("the token is not for this audience", invalid=True) from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("the token is from another issuer", invalid=True) from None
        except jwt.PyJWTError:
            raise Unauthenticated("the token is not valid", invalid=True) from None
        return Principal(f"jwt:{claims.get('sub', '?')}", _claimed_scopes(claims) & SCOPES)


def _claimed_scopes(claims: Mapping[str, object]) -> frozenset[str]:
    """`scope` (space-separated, RFC 8693) or `scp` (a list of strings, or one string). A token
    that claims its scopes in any other shape is refused: it was not minted for this server."""
    raw = claims["scope"] if "scope" in claims else claims.get("scp", "")
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list) and all(isinstance(scope, str) for scope in raw):
        return frozenset(raw)
    raise Unauthenticated("the token's scope claim is not a string or a list of strings", invalid=True)


class Authenticator:
    """Turns request headers into a `Principal`, or refuses them."""

    def __init__(self, keys: Mapping[str, Principal], jwt_verifier: JwtVerifier | None) -> None:
        self._keys = dict(keys)
        self._jwt = jwt_verifier

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        credential = headers.get(API_KEY_HEADER)
        if credential is None:
            scheme, _, value = headers.get("authorization", "").partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                credential = value.strip()
        if not credential:
            raise Unauthenticated("an API key or bearer token is required", invalid=False)
        if self._jwt is not None and _JWT_SHAPE.fullmatch(credential):
            return self._jwt.verify(credential)
        return self._lookup(credential)

    def _lookup(self, key: str) -> Principal:
        offered = digest(key)
        found = None
        for known, principal in self._keys.items():  # every digest compared: no early exit to time
            if hmac.compare_digest(known, offered):
                found = principal
        if found is None:
            raise Unauthenticated("the API key is not valid", invalid=True)
        return found


def authorize(principal: Principal, scope: str) -> None:
    if scope not in principal.scopes:
        raise Forbidden(f"this credential lacks the {scope!r} scope")


def build_authenticator(
    credentials: Credentials, jwt_algorithm: str | None, jwt_issuer: str | None, jwt_audience: str | None
) -> Authenticator:
    """The authenticator for the vetted `credentials` (`server.edge.credentials.load`)."""
    keys = {key.digest: Principal(key.name, key.scopes) for key in credentials.api_keys}
    verifier = None
    if jwt_algorithm and credentials.jwt_key is not None:
        verifier = JwtVerifier(jwt_algorithm, credentials.jwt_key, jwt_issuer, jwt_audience)
    return Authenticator(keys, verifier)


if __name__ == "__main__":
    import sys

    # The key comes on standard input, so it never lands in shell history or a process listing.
    print(digest(sys.stdin.read().strip()))
