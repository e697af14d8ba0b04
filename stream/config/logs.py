"""The command lines' logging: the detector's own lines at INFO on stderr; other libraries' (aiortc, aioice, uvicorn,
httpx, Ray, …) only from WARNING up unless `--verbose`."""

from __future__ import annotations

import logging
import sys

PROJECT_LOGGER = "deepfake_stream"  # every module of the project logs here
# Libraries that set levels on their own loggers (uvicorn's and Ray's set INFO when they configure themselves), so the
# root's level alone does not quiet them: each gets the level explicitly.
CHATTY_LOGGERS = ("aiortc", "aioice", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "ray")


def configure_logging(verbose: bool = False, prefix: str = "") -> None:
    """Our lines at INFO, the root (every other library) at WARNING, or at INFO with `verbose`. A handler on stderr
    is added only when the root has none (a Ray worker's may have one already); `prefix` starts each line."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"%(asctime)s {prefix}%(message)s", datefmt="%H:%M:%S"))
        root.addHandler(handler)
    level = logging.INFO if verbose else logging.WARNING
    root.setLevel(level)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    logging.getLogger(PROJECT_LOGGER).setLevel(logging.INFO)
