"""Who may call the detector's HTTP service: everyone on loopback, or the holders of a bearer token when one is set."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import HTTPException, Request

TOKEN_MISSING = "missing or wrong bearer token: send the header 'Authorization: Bearer <token>' given with --token"


def token_guard(token: str | None) -> Callable[[Request], None]:
    """A FastAPI dependency that answers 401 unless the request carries `Authorization: Bearer <token>`.

    With no token (a loopback-only service) every request passes. The comparison takes the same time for any
    wrong token, so the token cannot be guessed a character at a time."""

    def check(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(status_code=401, detail=TOKEN_MISSING, headers={"WWW-Authenticate": "Bearer"})

    return check
