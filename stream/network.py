"""Network names every layer shares: the one loopback check, the default address and the token variables."""

from __future__ import annotations

import ipaddress

LOOPBACK = "127.0.0.1"  # where everything listens unless the user gives an address (and a token or password)
TOKEN_ENV = "DEEPFAKE_STREAM_TOKEN"  # the service's admin token (the dashboard sends it; never the browser)
PUBLISH_TOKEN_ENV = "DEEPFAKE_STREAM_PUBLISH_TOKEN"  # a WHIP publisher's token (WHIP only)
TLS_CA_ENV = "DEEPFAKE_STREAM_TLS_CA"  # the CA file the dashboard verifies the service's certificate with


def is_loopback(host: str | None) -> bool:
    """True for a loopback address (127.0.0.0/8, ::1, bracketed or not) or `localhost`; False for anything else,
    names such as `127.x.example` and an unset address included (a server given none listens everywhere)."""
    if not host:
        return False
    bare = host.strip().removeprefix("[").removesuffix("]")
    if bare.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False
