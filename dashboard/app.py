"""The deepfake-stream dashboard: the page's layout over the score store, which it only reads.

    python run_stream.py --dashboard-only --db runs/deepfake.db   (127.0.0.1 only; dashboard/launch.py starts it)

It never loads the model, never opens a source and never waits on the detector: everything shown comes from the
store (DESIGN.md). The live parts (frames and health, faces, alerts) are fragments that rerun on their own
about twice a second while the run is live; a small watcher reruns the whole page when a store or a new run
appears or the run's state changes. Rendering lives in `dashboard/views.py`, queries in `dashboard/data.py`.

The control room's pages (analyse a video, cameras, this computer's camera) send commands to a running detector's
HTTP service, found through the store's session rows (`dashboard/detectors.py`, `dashboard/control.py`); with no
service running they say why. Off loopback, or with a password set, nothing is shown before the password
(`dashboard/gate.py`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

# `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the repository: add the repository so that
# `dashboard` and `stream` import as the packages they are.
_REPOSITORY = str(Path(__file__).resolve().parent.parent)
if _REPOSITORY not in sys.path:
    sys.path.insert(0, _REPOSITORY)

import streamlit as st  # noqa: E402

from dashboard import cameras_view, control, data, detectors, gate, upload_view, views  # noqa: E402
from stream.store import ScoreReader, SessionRow, StoreError, StreamRow  # noqa: E402

STREAMS_REFRESH_S = 0.5  # the latest annotated frame and health: about twice a second
FACES_REFRESH_S = 1.0  # face cards (with charts) and alerts
WATCH_S = 1.0  # how often the page looks for a new store, a new run or a change of the run's state
ALL_STREAMS = ""
WATCH = "watch"
PAGES = {
    WATCH: "Watch a run",
    "analyse": "Analyse a video",
    "cameras": "Cameras",
    "camera": "This computer's camera",
}
PAGE_KEY = "page"


def guarded(db: Path, draw: Callable[[ScoreReader | None], None]) -> None:
    """Draw with a reader for this page or fragment run (None: no store yet); a store that cannot be read is
    shown as an error, never raised."""
    try:
        with data.open_store(db) as reader:
            draw(reader)
    except StoreError as error:
        st.error(str(error), icon=":material/error:")


def _watch(db: Path, choice: str, seen: tuple[object, ...]) -> None:
    if data.fingerprint(db, choice) != seen:
        st.rerun()


def _live_part(
    draw: Callable[[ScoreReader, SessionRow, dict[str, StreamRow], views.View], None], view: views.View
) -> None:
    """One live part of the page (a fragment's body): reads the session and its streams afresh, then draws."""

    def body(reader: ScoreReader | None) -> None:
        session = (
            None if reader is None else next((s for s in reader.sessions() if s.session_id == view.session_id), None)
        )
        if reader is None or session is None:
            st.info("this run is no longer in the store")
            return
        draw(reader, session, {s.stream_id: s for s in reader.streams(session.session_id)}, view)

    guarded(view.db, body)


def sidebar(
    db: Path, sessions: list[SessionRow], reader: ScoreReader
) -> tuple[SessionRow, list[StreamRow], views.View]:
    """Session picker, stream selector, time range and threshold slider; the session and view they choose."""
    now = time.time()
    by_id = {s.session_id: s for s in sessions}

    def session_name(session_id: str) -> str:
        if session_id == data.LATEST:
            return f"latest: {data.session_label(sessions[0], now)}"
        return data.session_label(by_id[session_id], now) if session_id in by_id else session_id

    with st.sidebar:
        choice = st.selectbox("Session", [data.LATEST, *by_id], format_func=session_name, key="session")
        session = by_id.get(choice, sessions[0])
        streams = reader.streams(session.session_id)
        ids = [s.stream_id for s in streams]
        picked = st.selectbox(
            "Stream",
            [ALL_STREAMS, *ids],
            format_func=lambda s: "all streams" if s == ALL_STREAMS else s,
            key=f"stream:{session.session_id}",
        )
        range_label = st.selectbox("Time range", list(data.TIME_RANGES), key="range")
        threshold = st.slider(
            "Threshold (this page only)",
            min_value=0.0,
            max_value=1.0,
            value=float(session.threshold),
            step=0.01,
            key=f"threshold:{session.session_id}",
            help="Re-colours verdicts on this page; the detector and the store are not changed.",
        )
        st.caption(f"detector's threshold: {session.threshold:.2f} (hysteresis ± {session.hysteresis:.2f})")
        if not session.calibrated:
            st.caption("uncalibrated checkpoint: every verdict stays UNSURE, whatever the threshold")
        st.caption(f"store: `{db}`")
    view = views.View(
        db=db,
        session_id=session.session_id,
        stream_ids=tuple(ids if picked == ALL_STREAMS or picked not in ids else [picked]),
        range_s=data.TIME_RANGES.get(range_label),
        threshold=float(threshold),
    )
    return session, streams, view


def page(db: Path, reader: ScoreReader | None) -> None:
    if reader is None:
        views.no_database(db)
        return
    sessions = reader.sessions()
    if not sessions:
        views.no_sessions(db)
        return
    session, streams, view = sidebar(db, sessions, reader)
    status = data.session_status(session, time.time())
    views.uncalibrated_banner(session)
    st.title("deepfake-stream")
    views.session_caption(session)
    views.session_status(session, status, db)
    if not streams:
        st.info("this run has no streams yet")
        return
    live = status.running
    st.subheader("Streams")
    st.fragment(_live_part, run_every=STREAMS_REFRESH_S if live else None)(views.streams_section, view)
    st.subheader("Faces")
    st.fragment(_live_part, run_every=FACES_REFRESH_S if live else None)(views.faces_section, view)
    st.subheader("Alerts")
    st.fragment(_live_part, run_every=FACES_REFRESH_S if live else None)(views.alerts_section, view)
    st.subheader("Face summaries")
    views.summaries_section(reader, session)


def pick_page() -> str:
    """The sidebar's page choice; `?page=analyse` (say) opens a page directly, and the address follows the choice."""
    requested = st.query_params.get(PAGE_KEY)
    if PAGE_KEY not in st.session_state and requested in PAGES:
        st.session_state[PAGE_KEY] = requested
    chosen = str(st.radio("Page", list(PAGES), format_func=PAGES.get, key=PAGE_KEY, label_visibility="collapsed"))
    if requested != chosen:
        st.query_params[PAGE_KEY] = chosen
    return chosen


def pick_detector(db: Path, reader: ScoreReader | None) -> detectors.Target:
    """The newest running detector with a service; a picker in the sidebar when there are several."""
    token, ca = control.token_from(os.environ), control.ca_from(os.environ)
    found = detectors.find_detectors(reader, db, lambda url: control.Control(url, token, ca=ca).alive())
    if not found.running:
        return detectors.Target(None, None, found.reason)
    chosen = found.running[0]
    if len(found.running) > 1:
        by_url = {d.url: d for d in found.running}
        with st.sidebar:
            url = st.selectbox(
                "Detector",
                list(by_url),
                format_func=lambda u: detectors.label(by_url[u]),
                key="detector",
                help="Several detectors are running on this store: the commands on this page go to this one.",
            )
        chosen = by_url.get(str(url), chosen)
    return detectors.Target(chosen, control.Control(chosen.url, token, ca=ca), None)


def control_page(name: str, db: Path, reader: ScoreReader | None) -> None:
    target = pick_detector(db, reader)
    if name == "analyse":
        upload_view.page(db, reader, target)
    elif name == "cameras":
        cameras_view.cameras_page(db, target)
    else:
        cameras_view.camera_page(db, target)


def main() -> None:
    st.set_page_config(page_title="deepfake-stream", layout="wide")
    if not gate.admitted():
        return
    db = data.db_path(sys.argv[1:], os.environ)
    with st.sidebar:
        st.header("deepfake-stream")
        chosen = pick_page()
    if chosen != WATCH:
        guarded(db, lambda reader: control_page(chosen, db, reader))
        return
    # Taken before drawing, so a change while the page is drawn is seen at the watcher's next look.
    choice = str(st.session_state.get("session", data.LATEST))
    seen = data.fingerprint(db, choice)
    guarded(db, lambda reader: page(db, reader))
    st.fragment(_watch, run_every=WATCH_S)(db, choice, seen)


main()
