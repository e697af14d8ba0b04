"""Who may see the dashboard: anyone on this machine when it listens on loopback; elsewhere, only with the password.

The password comes from the environment (`DEEPFAKE_STREAM_DASHBOARD_PASSWORD`), never from argv, which `ps` shows to
every user of the machine. It is compared in constant time. Light (the standard library and `stream.network`):
`run_stream.py` checks the address with it before anything heavy loads.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from stream.network import LOOPBACK, is_loopback

PASSWORD_ENV = "DEEPFAKE_STREAM_DASHBOARD_PASSWORD"
DEFAULT_ADDRESS = LOOPBACK


def password_from(environ: Mapping[str, str]) -> str | None:
    """The dashboard's password, or None when none is set (an empty value counts as none)."""
    return environ.get(PASSWORD_ENV) or None


def address_problem(address: str | None, environ: Mapping[str, str]) -> str | None:
    """Why the dashboard must not serve on `address` (one line), or None when it may."""
    if is_loopback(address) or password_from(environ) is not None:
        return None
    where = address or "every interface"
    return (
        f"refusing to serve the dashboard on {where} without a password: anyone who can reach it could read the "
        f"store and drive the detector; set {PASSWORD_ENV} in the environment, or serve on {DEFAULT_ADDRESS}"
    )


def password_matches(given: str, expected: str) -> bool:
    """Compare in constant time (both hashed first, so not even the length leaks)."""
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest())
