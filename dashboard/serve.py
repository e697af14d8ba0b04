"""What `streamlit run` serves: the dashboard's page (dashboard/app.py) as an `st.App`, with the guard in front of
Streamlit's routes (dashboard/guard.py). dashboard/launch.py starts it; `streamlit run dashboard/app.py` alone would
serve the page without the guard."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# `streamlit run dashboard/serve.py` puts dashboard/ on sys.path, not the repository (as for app.py).
_REPOSITORY = str(Path(__file__).resolve().parent.parent)
if _REPOSITORY not in sys.path:
    sys.path.insert(0, _REPOSITORY)

import streamlit as st  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from dashboard.guard import ASGIApp, Guard  # noqa: E402

PAGE = Path(__file__).resolve().with_name("app.py")


def guarded(inner: ASGIApp) -> Guard:
    """The guard around Streamlit's app, with the options this server was started with."""
    return Guard(inner, st.get_option("server.address"), st.get_option("server.baseUrlPath"), os.environ)


app = st.App(PAGE, middleware=[Middleware(guarded)])
