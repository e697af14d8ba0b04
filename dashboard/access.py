"""Who may see the dashboard: anyone on this machine when it listens on loopback; elsewhere, only with the password.

The password comes from the environment (`DEEPFAKE_STREAM_DASHBOARD_PASSWORD`), never from argv, which `ps` shows to
every user of the machine. It is compared in constant time. Standard library only: `run_stream.py` checks the
address with it before anything heavy loads.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Mapping

PASSWORD_ENV = "DEEPFAKE_STREAM_DASHBOARD_PASSWORD"
TOKEN_ENV = "DEEPFAKE_STREAM_TOKEN"  # the detector service's token, for the dashboard's requests (never the browser)
DEFAULT_ADDRESS = "127.0.0.1"


def is_loopback(address: str | None) -> bool:
    """True for a loopback address (127.0.0.0/8, ::1, `localhost`); False for anything else, an unset one included
    (Streamlit listens on every interface when no address is given)."""
    if not address:
        return False
    if address.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


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
