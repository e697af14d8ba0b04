"""The guard in front of Streamlit's own routes: what a browser may reach before the password gate lets its session in.

The page's script can hide a widget, but Streamlit's HTTP routes answer whoever asks: `PUT /_stcore/upload_file/
SESSION/FILE` takes a file for any session that holds the page's XSRF cookie, before any password. So the dashboard is
served as an `st.App` (dashboard/serve.py) with this ASGI middleware in front of Streamlit's routes:

- `/_stcore/upload_file/SESSION/…` only for a session the gate has unlocked (or when the gate is open: loopback and
  no password), else 403;
- under `/_stcore/` only what the page needs to load (`health`, `host-config`, `stream`, the uploads above and the
  components' files); everything else there (`metrics`, the agent API that drives a page without a browser, the
  script health check) is refused, always: the dashboard uses none of it;
- Streamlit's sign-in routes (`/auth/…`, `/oauth2callback`) are refused: the dashboard has its own gate;
- the rest goes on: the page's static files, and `/media/…`, whose ids are hashes of content that only a page drawn
  after the password makes (a pre-login session cannot name one).

The sessions let in are kept here, in this process's memory (never in `st.cache_resource`, which a client message
can clear): each one's session id with a random value its session state holds as well (dashboard/gate.py).
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from dashboard import access

MAX_UNLOCKED = 1024  # sessions let in that are remembered; past this, the oldest must give the password again
CORE = "_stcore"
CORE_OPEN = frozenset({"health", "host-config", "stream", "bidi-components"})
UPLOAD = "upload_file"
REFUSED_TOP = frozenset({"auth", "oauth2callback"})
LOCKED = "the dashboard is locked: open its page and give the password first"
NOT_SERVED = "not served by this dashboard"

_lock = threading.Lock()
_unlocked: OrderedDict[str, str] = OrderedDict()

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def unlock(session_id: str) -> str:
    """Let this session in; the value its session state keeps to show it was let in."""
    value = secrets.token_hex(16)
    with _lock:
        _unlocked[session_id] = value
        _unlocked.move_to_end(session_id)
        while len(_unlocked) > MAX_UNLOCKED:
            _unlocked.popitem(last=False)
    return value


def is_unlocked(session_id: str) -> bool:
    """Was this session let in (its uploads may go through)?"""
    with _lock:
        return session_id in _unlocked


def holds(session_id: str, value: object) -> bool:
    """Was this session let in, and is `value` (from its session state) the one it was given? Constant time."""
    with _lock:
        expected = _unlocked.get(session_id)
    return expected is not None and isinstance(value, str) and hmac.compare_digest(value, expected)


def gate_open(address: str | None, environ: Mapping[str, str]) -> bool:
    """No password to ask: loopback with no password set (off loopback without one nothing is served at all)."""
    return access.password_from(environ) is None and access.address_problem(address, environ) is None


def refusal(path: str, base: str, open_gate: bool) -> str | None:
    """Why a request for `path` is refused (one line), or None when it may go on to Streamlit."""
    parts = path.strip("/").split("/")
    prefix = [p for p in base.strip("/").split("/") if p]
    if prefix and parts[: len(prefix)] == prefix:
        parts = parts[len(prefix) :]
    if not parts:
        return None
    if parts[0] in REFUSED_TOP:
        return NOT_SERVED
    if parts[0] != CORE:
        return None
    if len(parts) > 1 and parts[1] in CORE_OPEN:
        return None
    if len(parts) > 2 and parts[1] == UPLOAD:
        return None if open_gate or is_unlocked(parts[2]) else LOCKED
    return NOT_SERVED


class Guard:
    """ASGI middleware: refuses (403, one line) what `refusal` says, before Streamlit sees the request."""

    def __init__(self, app: ASGIApp, address: str | None, base: str, environ: Mapping[str, str]) -> None:
        self.app = app
        self.base = base
        self.open_gate = gate_open(address, environ)

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        why = None if scope["type"] not in ("http", "websocket") else refusal(scope["path"], self.base, self.open_gate)
        if why is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": why})
        else:
            body = f"{why}\n".encode()
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 403, "headers": headers})
            await send({"type": "http.response.body", "body": body})
