"""Who may call the detector's HTTP service: everyone on loopback when no token is set; otherwise the holder of the
admin token (everything) or of the publish token (WHIP only), each sent as `Authorization: Bearer <token>`."""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable

from fastapi import HTTPException, Request

TOKEN_MISSING = (
    "missing or wrong bearer token: send the header 'Authorization: Bearer <token>' with the service's token "
    "(--token-file or $DEEPFAKE_STREAM_TOKEN)"
)
ADMIN_ONLY = "a publish token may only publish (WHIP): this route needs the admin token"


class Scope(enum.Enum):
    """What a request's token lets it do. OPEN: no token is set (a loopback-only service), everything."""

    OPEN = "open"
    ADMIN = "admin"
    PUBLISH = "publish"


def bearer(header: str) -> str | None:
    """The credentials of an `Authorization: Bearer …` header (the scheme in any case, RFC 7235); None otherwise."""
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    return credentials if scheme.lower() == "bearer" and credentials else None


def scope_of(header: str, token: str | None, publish_token: str | None = None) -> Scope | None:
    """The scope the `Authorization` header grants; None when it names neither token. Both comparisons always run
    and take the same time for any wrong token, so a token cannot be guessed a character at a time."""
    if token is None:
        return Scope.OPEN
    given = (bearer(header) or "").encode()
    admin = hmac.compare_digest(given, token.encode())
    publish = hmac.compare_digest(given, (publish_token or "").encode()) and publish_token is not None
    return Scope.ADMIN if admin else Scope.PUBLISH if publish else None


def _refused() -> HTTPException:
    return HTTPException(status_code=401, detail=TOKEN_MISSING, headers={"WWW-Authenticate": "Bearer"})


def token_guard(token: str | None, publish_token: str | None = None) -> Callable[[Request], Scope]:
    """A FastAPI dependency for the admin's routes: 401 without the admin token, 403 with the publish token. With no
    token (a loopback-only service) every request passes."""

    def check(request: Request) -> Scope:
        scope = scope_of(request.headers.get("authorization", ""), token, publish_token)
        if scope is None:
            raise _refused()
        if scope is Scope.PUBLISH:
            raise HTTPException(status_code=403, detail=ADMIN_ONLY)
        return scope

    return check


def publish_guard(token: str | None, publish_token: str | None) -> Callable[[Request], Scope]:
    """A FastAPI dependency for WHIP: the admin or the publish token (401 otherwise); returns which."""

    def check(request: Request) -> Scope:
        scope = scope_of(request.headers.get("authorization", ""), token, publish_token)
        if scope is None:
            raise _refused()
        return scope

    return check
