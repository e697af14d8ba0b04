"""The password gate the page passes before it reads anything from the store (dashboard/access.py decides when).

On loopback with no password set, everyone on this machine is let in. With `DEEPFAKE_STREAM_DASHBOARD_PASSWORD` set
(required on any other address) the page shows a password form and nothing else until the right one is given; a
wrong one waits a moment before it says so. Once in, the browser session stays in: its session id is remembered in
this process's memory (dashboard/guard.py, which also lets that session's uploads through) with a random value its
session state keeps too, so no value a browser sends can stand in for it and no client message can clear it.
"""

from __future__ import annotations

import os
import time

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from dashboard import access, guard

UNLOCKED_KEY = "gate:unlocked"
WRONG_DELAY_S = 1.0  # slows guessing; the comparison itself is constant-time


def _session_id() -> str | None:
    context = get_script_run_ctx()
    return None if context is None else context.session_id


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
    session_id = _session_id()
    if session_id is not None and guard.holds(session_id, st.session_state.get(UNLOCKED_KEY)):
        return True
    st.title("deepfake-stream")
    st.caption(f"This dashboard asks for its password (set by whoever started it, in {access.PASSWORD_ENV}).")
    with st.form("gate", clear_on_submit=True):
        given = st.text_input("Password", type="password", key="gate:password")
        submitted = st.form_submit_button("Open the dashboard")
    if submitted:
        if access.password_matches(given, expected) and session_id is not None:
            st.session_state[UNLOCKED_KEY] = guard.unlock(session_id)
            st.rerun()
        time.sleep(WRONG_DELAY_S)
        st.error("wrong password", icon=":material/lock:")
    return False
