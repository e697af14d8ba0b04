"""Start the dashboard as a child process (`streamlit run dashboard/serve.py`, the page behind its guard); stop it.

`run_stream.py SOURCE --dashboard` uses this to run the dashboard beside the detector, `--dashboard-only` to serve
it alone over a store; the browser test uses it too. The dashboard listens on 127.0.0.1 unless told otherwise, on a
free port when none is given, and makes no connection of its own beyond the machine (`command()`). On any other
address it needs `DEEPFAKE_STREAM_DASHBOARD_PASSWORD` in the environment (dashboard/access.py). The detector
service's admin token reaches it through its environment (`DEEPFAKE_STREAM_TOKEN`), never its argv, and so does the CA
file that verifies an https:// service's certificate (`DEEPFAKE_STREAM_TLS_CA`).
"""

from __future__ import annotations

import math
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from dashboard.access import address_problem
from stream.config.store_location import StoreTarget, parse_store_target
from stream.network import TLS_CA_ENV, TOKEN_ENV

APP = Path(__file__).resolve().with_name("serve.py")  # the page (app.py) behind the guard (guard.py)
DEFAULT_UPLOAD_MB = 500.0  # service.upload_max_mb's default, when the caller does not say
_POLL_S = 0.1


class DashboardError(Exception):
    """The dashboard did not start; the message is one line meant for the user."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS picks it; another process could still take it before we do)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class DashboardProcess:
    """A running `streamlit run dashboard/serve.py`: `.url` to open, `.stop()` to end it (idempotent)."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log: IO[bytes]) -> None:
        self.process = process
        self.url = url
        self._log = log
        self._output = ""  # what it printed, kept when it stops

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        """What the dashboard printed so far (stdout and stderr together)."""
        if self._log.closed:
            return self._output
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """Terminate the dashboard, killing it if it does not exit within `timeout_s`; its exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)
        if not self._log.closed:
            self._output = self.output()
            self._log.close()
        return self.process.returncode

    def __enter__(self) -> DashboardProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# `python -m streamlit` with Streamlit's two address look-ups answered locally (None: unknown). Streamlit 1.67
# calls them when a WebSocket arrives from an origin other than the page's (any web page the user has open can
# try that): `get_internal_ip` connects a UDP socket to 8.8.8.8 and `get_external_ip` asks
# http(s)://checkip.amazonaws.com, and no option turns them off short of `server.enableCORS false`, which would
# let every origin in. With None, such a WebSocket is simply refused (403).
_STREAMLIT_OFFLINE = (
    "import sys; import streamlit.net_util as net; from streamlit.web.cli import main; "
    "net.get_internal_ip = net.get_external_ip = lambda: None; "
    "sys.exit(main(prog_name='streamlit'))"
)


def command(
    db: StoreTarget, host: str, port: int, upload_max_mb: float = DEFAULT_UPLOAD_MB, clips: Path | None = None
) -> list[str]:
    """`streamlit run dashboard/serve.py` with nothing that leaves the machine unasked.

    - `server.address` set to one address (not 0.0.0.0 or ::): listen there only, and print that one URL
      instead of looking up the machine's internal and (when headless) external address for the banner.
    - `server.headless`: no browser opened, no e-mail prompt (whose answer Streamlit would send to its servers).
    - `browser.gatherUsageStats false`: the page sends no usage statistics, and nothing is counted for them.
    - the address look-ups behind the WebSocket origin check answered locally (`_STREAMLIT_OFFLINE` above).
    - `server.maxUploadSize`: the service's upload cap (`service.upload_max_mb`, whole MB, rounded up), so the
      page's uploader takes what the detector takes and Streamlit holds no more than that per file.
    - `--clips`: the only folder the page plays evidence clips from (default: `clips` beside the store).
    """
    extra = ["--clips", str(clips)] if clips is not None else []
    return [
        sys.executable,
        "-c",
        _STREAMLIT_OFFLINE,
        "run",
        str(APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.showEmailPrompt",
        "false",
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "minimal",
        "--server.maxUploadSize",
        str(max(1, math.ceil(upload_max_mb))),
        "--",
        "--db",
        str(db),
        *extra,
    ]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1.0) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "(no output)"


def start_dashboard(
    db: StoreTarget | str,
    port: int | None = None,
    host: str = "127.0.0.1",
    timeout_s: float = 60.0,
    token: str | None = None,
    tls_ca: Path | None = None,
    upload_max_mb: float = DEFAULT_UPLOAD_MB,
    clips: Path | None = None,
) -> DashboardProcess:
    """Start the dashboard over the store at `db` and wait until it answers HTTP; `DashboardError` if it cannot.

    `port=None` picks a free port. The store need not exist yet: the page says how to start the detector and
    shows the data once it appears. `token`: the detector service's admin token, and `tls_ca`: the CA file its
    certificate is verified with, both handed over in the child's environment (never its argv).
    A `host` other than loopback is refused unless the password is set in the environment. `upload_max_mb`: the
    service's upload cap; `clips`: the clips folder (None: `clips` beside the store).
    """
    problem = address_problem(host, os.environ)
    if problem is not None:
        raise DashboardError(problem)
    env = dict(os.environ)
    if token:
        env[TOKEN_ENV] = token
    if tls_ca is not None:
        try:
            ssl.create_default_context(cafile=tls_ca)  # refused now, in one line, rather than on every page
        except (OSError, ssl.SSLError) as error:
            reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or error
            raise DashboardError(f"--tls-ca {tls_ca} cannot be used: {reason}") from None
        env[TLS_CA_ENV] = str(Path(tls_ca).resolve())
    db = parse_store_target(db)  # a postgresql:// URL stays a URL (its password, never in it, comes from libpq)
    if isinstance(db, Path):
        db = db.resolve()
    chosen = free_port(host) if port is None else port
    display_host = f"[{host}]" if ":" in host else host
    url = f"http://{display_host}:{chosen}"
    log = tempfile.TemporaryFile()  # noqa: SIM115 (the DashboardProcess owns it and closes it in stop())
    try:
        process = subprocess.Popen(
            command(db, host, chosen, upload_max_mb, clips), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
        )
    except OSError as error:
        log.close()
        raise DashboardError(f"cannot start the dashboard ({sys.executable} -m streamlit): {error}") from None
    dashboard = DashboardProcess(process, url, log)
    deadline = time.monotonic() + timeout_s
    while not _answers(url):
        if process.poll() is not None:
            output = dashboard.output()
            dashboard.stop()
            raise DashboardError(f"the dashboard exited with status {process.returncode}: {_tail(output)}")
        if time.monotonic() >= deadline:
            output = dashboard.output()
            dashboard.stop()
            raise DashboardError(f"the dashboard did not answer at {url} within {timeout_s:g} s: {_tail(output)}")
        time.sleep(_POLL_S)
    return dashboard
