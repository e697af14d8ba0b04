"""Browsers cannot drive the service from another site: an ASGI middleware that checks the `Host` header (against DNS
rebinding: 421 for a name that is not this service's) and the `Origin` of state-changing requests (403 for a foreign
page's request that carries no token).

Accepted hosts: loopback names and addresses and `service.allowed_hosts`; on a service with a token also the
address the request came in on, every address of this machine's interfaces and `service.public_url`'s host. Any
port. A request without `Host` (HTTP/1.0 tools) is let through: browsers always send one.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import socket
import struct
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stream.config import ServiceSettings
from stream.network import is_loopback
from stream.service.auth import Scope, scope_of
from stream.text import one_line

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Message, Receive, Send], Awaitable[None]]

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REFRESH_S = 5.0  # a Host that is no known address re-reads the interfaces at most this often (DHCP, a new link)
_SIOCGIFADDR = 0x8915
_IF_INET6 = Path("/proc/net/if_inet6")


def _normal(name: str) -> str:
    """A host name or address as compared: lower case, no trailing dot, an IPv6 address without brackets and in
    its short form."""
    bare = name.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(bare))
    return bare


def host_name(header: str) -> str | None:
    """The name in a `Host` header (`name`, `name:port`, `[v6]:port`), normalised; None when it is malformed."""
    value = header.strip()
    if value.startswith("["):
        inside, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return _normal(inside)
    name, colon, port = value.rpartition(":")
    if not colon:
        name = value
    elif not port.isdigit():
        return None
    if not name or any(char in name for char in "/@\\ :"):
        return None
    return _normal(name)


def interface_addresses() -> set[str]:
    """Every address of this machine's interfaces (IPv4 through the SIOCGIFADDR ioctl, IPv6 from /proc on Linux)."""
    found: set[str] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            with contextlib.suppress(OSError):
                packed = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
                found.add(socket.inet_ntoa(packed[20:24]))
    with contextlib.suppress(OSError, ValueError):
        for line in _IF_INET6.read_text().splitlines():
            digits = line.split()[0]
            found.add(str(ipaddress.IPv6Address(bytes.fromhex(digits))))
    return found


class HostCheck:
    """The middleware (see the module's docstring); `settings` are the service's."""

    def __init__(self, app: App, settings: ServiceSettings) -> None:
        self.app = app
        self._settings = settings
        self._with_token = settings.token is not None
        names = {_normal(name) for name in settings.allowed_hosts}
        public = urlsplit(settings.public_url).hostname if settings.public_url else None
        if self._with_token and public:
            names.add(_normal(public))
        self._names = frozenset(names)
        self._addresses: set[str] = set()
        self._read_at = float("-inf")

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the service has no WebSocket routes
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope.get("headers", ())}
        host = headers.get("host")
        if host is not None and not self.accepts(host_name(host), scope):
            shown = one_line(host, limit=80)
            await _answer(
                send,
                421,
                f"Host {shown!r} is not this service's name: call it by a loopback address (127.0.0.1, localhost) or "
                "add the name to service.allowed_hosts (a guard against DNS rebinding)",
            )
            return
        origin = headers.get("origin")
        if (
            origin is not None
            and scope.get("method") in STATE_CHANGING
            and not self.accepts(_origin_host(origin), scope)
            and scope_of(headers.get("authorization", ""), self._settings.token, self._settings.publish_token)
            in (None, Scope.OPEN)
        ):
            shown = one_line(origin, limit=80)
            await _answer(
                send,
                403,
                f"cross-site request from {shown} refused: send it from a page of this service, or with its token",
            )
            return
        await self.app(scope, receive, send)

    def accepts(self, name: str | None, scope: Message) -> bool:
        """Is `name` (normalised) one of this service's names for the request `scope`?"""
        if name is None:
            return False
        if is_loopback(name) or name in self._names:
            return True
        if not self._with_token:
            return False
        server = scope.get("server")
        if server and _normal(str(server[0])) == name:  # the address this request came in on
            return True
        return self._is_interface_address(name)

    def _is_interface_address(self, name: str) -> bool:
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        if name not in self._addresses and time.monotonic() - self._read_at > REFRESH_S:
            self._addresses, self._read_at = interface_addresses(), time.monotonic()
        return name in self._addresses


def _origin_host(origin: str) -> str | None:
    """The host of an `Origin` header (`null` and anything but http(s) have none)."""
    try:
        parts = urlsplit(origin.strip())
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return _normal(parts.hostname)


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
