"""Where the service listens: the token rule for an address other than loopback, the TLS files, and the listening
socket, bound before the model loads (the standard library and the config only) and handed to uvicorn once the
detector is up."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from stream.config import ServiceSettings

BACKLOG = 128  # connections that wait while the model loads: they are answered once the service starts


class ServiceError(Exception):
    """The service cannot start: the message is one line for the user."""


def check_bind(settings: ServiceSettings) -> None:
    """A bind address other than loopback needs a token: refuse in one line otherwise."""
    if not settings.is_loopback() and settings.token is None:
        raise ServiceError(
            f"refusing to serve on {settings.host} without a token: anyone who can reach it could drive the "
            "detector; give a token (--token-file FILE or $DEEPFAKE_STREAM_TOKEN), or serve on 127.0.0.1"
        )


def check_tls(settings: ServiceSettings) -> None:
    """The TLS certificate and key load and belong together, and the dashboard's CA file loads: ServiceError (one
    line) otherwise. Read with the standard library only, before the model loads."""
    if settings.tls_cert is not None and settings.tls_key is not None:
        for flag, path in (("--tls-cert", settings.tls_cert), ("--tls-key", settings.tls_key)):
            _readable(flag, path)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            # An empty password: an encrypted key is refused here instead of OpenSSL asking for one on the terminal.
            context.load_cert_chain(settings.tls_cert, settings.tls_key, password=b"")
        except (ssl.SSLError, OSError) as error:
            raise ServiceError(
                f"--tls-cert {settings.tls_cert} with --tls-key {settings.tls_key} cannot be used "
                f"({_ssl_reason(error)}): give a PEM certificate and its unencrypted PEM key"
            ) from None
    if settings.tls_ca is not None:
        _readable("--tls-ca", settings.tls_ca)
        try:
            ssl.create_default_context(cafile=settings.tls_ca)
        except (ssl.SSLError, OSError) as error:
            raise ServiceError(f"--tls-ca {settings.tls_ca} is no PEM CA certificate ({_ssl_reason(error)})") from None


def _readable(flag: str, path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        raise ServiceError(f"{flag} {path}: {error.strerror or error}") from None


def _ssl_reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or str(error)
    return " ".join(str(reason).split())[:200]


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (0: a free port); ServiceError (one line) when it cannot.

    It listens at once, so the port is this process's from now on: a port taken meanwhile cannot turn up only
    after the model has loaded."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        raise ServiceError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sock


def open_listener(settings: ServiceSettings) -> socket.socket:
    """The token rule, the TLS files, then the listening socket of `settings` (its port must be set)."""
    check_bind(settings)
    check_tls(settings)
    if settings.port is None:
        raise ValueError("the service has no port to listen on")
    return listen(settings.host, settings.port)
