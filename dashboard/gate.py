"""The password gate the page passes before it reads anything from the store (dashboard/access.py decides when).

On loopback with no password set, everyone on this machine is let in. With `DEEPFAKE_STREAM_DASHBOARD_PASSWORD` set
(required on any other address) the page shows a password form and nothing else until the right one is given; a
wrong one waits a moment before it says so. Once in, the browser session stays in: the session state keeps a value
derived from a secret that lives only in this process, so no value a browser sends can stand in for it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time

import streamlit as st

from dashboard import access

UNLOCKED_KEY = "gate:unlocked"
WRONG_DELAY_S = 1.0  # slows guessing; the comparison itself is constant-time


@st.cache_resource
def _process_secret() -> bytes:
    return secrets.token_bytes(32)


def _pass() -> str:
    return hmac.new(_process_secret(), b"dashboard unlocked", hashlib.sha256).hexdigest()


def admitted() -> bool:
    """True when this browser session may see the page; otherwise the page shows only the gate (or why it is
    closed) and the caller draws nothing else."""
    address = st.get_option("server.address")
    expected = access.password_from(os.environ)
    if expected is None:
        problem = access.address_problem(address, os.environ)
        if problem is None:
            return True
        st.error(problem, icon=":material/lock:")
        return False
    unlocked = st.session_state.get(UNLOCKED_KEY)
    if isinstance(unlocked, str) and hmac.compare_digest(unlocked, _pass()):
        return True
    st.title("deepfake-stream")
    st.caption(f"This dashboard asks for its password (set by whoever started it, in {access.PASSWORD_ENV}).")
    with st.form("gate", clear_on_submit=True):
        given = st.text_input("Password", type="password", key="gate:password")
        submitted = st.form_submit_button("Open the dashboard")
    if submitted:
        if access.password_matches(given, expected):
            st.session_state[UNLOCKED_KEY] = _pass()
            st.rerun()
        time.sleep(WRONG_DELAY_S)
        st.error("wrong password", icon=":material/lock:")
    return False
