"""The "Cameras" page (add a source to the running detector, stop a stream) and the "This computer's camera" page (a
link to the service's WHIP publish page). Commands go to the service (dashboard/control.py); the list of streams and
their state is read from the store. Passwords in camera URLs are never shown: the service keeps them out of what it
stores and answers, and the page removes any that a message still carries.
"""

from __future__ import annotations

import re
import urllib.parse
from collections import Counter
from collections.abc import Collection
from pathlib import Path

import streamlit as st

from dashboard import data, views
from dashboard.control import Control, ControlError, SourcePolicy, redact
from dashboard.detectors import Target
from stream.network import is_loopback
from stream.records import ClusterCamera
from stream.store import StoreError, StreamRow

STREAMS_REFRESH_S = 1.0
RUNNING_STATES = ("starting", "live", "reconnecting")
KINDS = {
    "rtsp": "RTSP camera",
    "webcam": "Webcam",
    "screen": "Screen region",
    "file": "Video file",
}
MESSAGE_KEY = "cameras:message"
_WEBCAM = re.compile(r"\d{1,3}|/dev/video\d{1,3}")
_REGION = re.compile(r"\s*\d+\s*,\s*\d+\s*,\s*\d+\s*,\s*\d+\s*")


def source_reference(kind: str, text: str, user: str = "", password: str = "") -> str:
    """The source reference `run_stream.py` (and the service) takes, from the form's fields; ValueError (one line)
    when the fields cannot make one."""
    text = text.strip()
    if kind == "rtsp":
        parts = urllib.parse.urlsplit(text)
        if parts.scheme.lower() not in ("rtsp", "rtsps") or not parts.hostname:
            raise ValueError("an RTSP camera needs a URL like rtsp://camera.local:554/stream")
        if user:
            if parts.username is not None:
                raise ValueError("give the user and password either in the URL or in their fields, not both")
            secret = f":{urllib.parse.quote(password, safe='')}" if password else ""
            login = urllib.parse.quote(user, safe="") + secret
            parts = parts._replace(netloc=f"{login}@{parts.netloc}")
        return urllib.parse.urlunsplit(parts)
    if kind == "webcam":
        if not _WEBCAM.fullmatch(text):
            raise ValueError("a webcam is its index (0, 1, …) or its device (/dev/video0)")
        return text
    if kind == "screen":
        if not text:
            return "screen"
        if not _REGION.fullmatch(text):
            raise ValueError("a screen region is X,Y,WIDTH,HEIGHT in pixels (empty: the whole screen)")
        return "screen:" + ",".join(part.strip() for part in text.split(","))
    if kind == "file":
        if not text:
            raise ValueError("give the video file's path on the detector's machine")
        return text
    raise ValueError(f"unknown kind of source {kind!r}")


def cameras_page(db: Path, target: Target) -> None:
    st.title("Cameras")
    if cluster_rows(db):  # a refreshing part only where a cluster wrote to this store: it reruns every second
        st.fragment(cluster_section, run_every=STREAMS_REFRESH_S)(db)
    if target.control is None or target.detector is None:
        st.info(target.reason or "no detector service", icon=":material/block:")
        return
    st.caption(
        f"the detector at {target.control.url} (run started "
        f"{data.wall_time(target.detector.session.started_at, with_date=True)})"
    )
    add_form(target.control)
    st.subheader("Streams")
    st.fragment(streams_list, run_every=STREAMS_REFRESH_S)(db, target.detector.session.session_id, target.control)


def cluster_rows(db: Path) -> list[ClusterCamera]:
    """The newest cluster's placement in this store (none where no cluster wrote, or the store cannot be read)."""
    try:
        with data.open_store(db) as reader:
            return [] if reader is None else reader.cluster_status()
    except StoreError:
        return []


def cluster_section(db: Path) -> None:
    """Where the newest cluster of detectors (`python -m stream.cluster`) runs each camera, as its coordinator last
    wrote it to the store."""
    cameras = cluster_rows(db)
    if not cameras:
        return
    st.subheader("Cluster")
    newest = max(camera.t for camera in cameras)
    st.caption(f"cluster `{cameras[0].cluster_id}`, as its coordinator saw it at {data.wall_time(newest)}")
    st.dataframe(
        [
            {
                "camera": camera.camera,
                "state": camera.state,
                "detector": camera.actor or "(none free)",
                "node": camera.node or "",
                "since": data.wall_time(camera.since),
                "session": camera.session_id or "",
                "detail": redact(camera.detail or ""),
            }
            for camera in cameras
        ],
        hide_index=True,
        width="stretch",
    )


def add_form(control: Control) -> None:
    """What kind of source (those the detector's source policy allows), its reference, a name; sent as POST
    /api/streams."""
    try:
        policy: SourcePolicy | None = control.source_policy()
    except ControlError:
        policy = None  # a detector that says nothing of a policy: it still refuses what it does not take
    offered = [kind for kind in KINDS if policy is None or policy.allows(kind)]
    if policy is not None:
        off = [f"{KINDS[kind]}: {policy.off[kind]}" for kind in KINDS if not policy.allows(kind)]
        if off:
            st.caption("Not offered here: " + "; ".join(off) + ".")
        if policy.camera_hosts:
            st.caption("RTSP cameras only on " + ", ".join(policy.camera_hosts) + " (service.camera_hosts).")
    if not offered:
        st.info("this detector's config lets the API add no cameras or files", icon=":material/block:")
        return
    kind = st.radio("Add a source", offered, format_func=KINDS.get, horizontal=True, key="camera:kind")
    with st.form("camera:add", clear_on_submit=True, border=True):
        user = password = ""
        if kind == "rtsp":
            text = st.text_input("RTSP URL", placeholder="rtsp://camera.local:554/stream", key="camera:url")
            left, right = st.columns(2)
            user = left.text_input("User (optional)", key="camera:user")
            password = right.text_input("Password (optional)", type="password", key="camera:password")
        elif kind == "webcam":
            text = st.text_input(
                "Webcam on the detector's machine", value="0", help="0, 1, … or /dev/video0", key="camera:webcam"
            )
        elif kind == "screen":
            text = st.text_input("Region X,Y,WIDTH,HEIGHT (empty: the whole screen)", key="camera:region")
        else:
            folder = policy.media_dir if policy is not None and policy.media_dir else "the detector's machine"
            text = st.text_input(f"Path of the video file in {folder}", key="camera:path")
        name = st.text_input(
            "Name (optional)", help="the stream's id: 1-64 of A-Z a-z 0-9 _ . -", key="camera:name"
        ).strip()
        submitted = st.form_submit_button("Add", key="camera:submit")
    if not submitted:
        return
    try:
        reference = source_reference(str(kind), text, user.strip(), password)
    except ValueError as error:
        st.error(str(error), icon=":material/error:")
        return
    with st.spinner("opening the source…"):
        try:
            added = control.open_stream(reference, name or None)
        except ControlError as error:
            st.error(f"not added: {redact(str(error))}", icon=":material/error:")
            return
    st.success(f"added **{added.stream_id}** (`{redact(added.source)}`): {added.state}", icon=":material/check:")


def streams_list(db: Path, session_id: str, control: Control, kinds: Collection[str] | None = None) -> None:
    """This detector's streams from the store (uploads are on their own page), each with a Stop button while it
    runs. A fragment: it rereads the store about once a second."""
    message = st.session_state.pop(MESSAGE_KEY, None)
    if message is not None:
        (st.success if message[0] == "ok" else st.error)(message[1])
    with data.open_store(db) as reader:
        streams = [] if reader is None else reader.streams(session_id)
        in_view = Counter(f.stream_id for f in reader.faces(session_id) if f.state == "live") if reader else Counter()
    shown = [s for s in streams if s.kind != "upload" and (kinds is None or s.kind in kinds)]
    if not shown:
        st.caption("no streams yet")
        return
    for stream in shown:
        stream_row(stream, control, in_view[stream.stream_id])


def _state(stream: StreamRow) -> str:
    return "starting" if stream.health is None else str(stream.health.state)


def stream_row(stream: StreamRow, control: Control, faces: int = 0) -> None:
    """`faces`: the stream's faces in view (the scored rate is per face)."""
    state = _state(stream)
    colour = views.STATE_COLOURS.get(state, "gray")
    with st.container(border=True, key=f"camera-{views.card_key_of(stream.stream_id)}"):
        text, button = st.columns([5, 1])
        with text:
            source = redact(stream.source)
            st.markdown(f"**{stream.stream_id}** · {stream.kind} · `{source}` · :{colour}-badge[{state}]")
            health = stream.health
            if health is not None:
                label, rate = views.windows_metric(health.fps_scored, faces)
                line = f"fps in {health.fps_in:.1f} · {label} {rate} · dropped {health.frames_dropped}"
                if health.reconnects:
                    line += f" · reconnects {health.reconnects}"
                if health.last_error:
                    line += f" · last error: {redact(health.last_error)}"
                st.caption(line)
        if state in RUNNING_STATES and button.button("Stop", key=f"stop:{stream.stream_id}"):
            try:
                stopped = control.stop_stream(stream.stream_id)
            except ControlError as error:
                st.session_state[MESSAGE_KEY] = ("error", f"{stream.stream_id} not stopped: {error}")
            else:
                st.session_state[MESSAGE_KEY] = ("ok", f"stopped {stopped.stream_id}: {stopped.state}")
            st.rerun()


def camera_page(db: Path, target: Target) -> None:
    """A link to the service's publish page, which sends this browser's camera to the detector over WebRTC."""
    st.title("This computer's camera")
    if target.control is None or target.detector is None:
        st.info(target.reason or "no detector service", icon=":material/block:")
        return
    url = target.control.url
    st.markdown(
        "The detector's camera page publishes this browser's camera to the detector (WebRTC, WHIP). Its faces are "
        "scored like any camera's, beside the preview there, and the stream it makes is listed here, under "
        "Cameras and on the Watch page."
    )
    st.link_button("Open the camera page", url, icon=":material/videocam:", type="primary")
    host = urllib.parse.urlsplit(url).hostname
    if not is_loopback(host):
        st.warning(
            f"Browsers give the camera only to a secure context: {url} is not one. Open the page on the detector's "
            "machine at http://127.0.0.1:PORT/ (or through HTTPS).",
            icon=":material/warning:",
        )
    else:
        st.caption(f"{url} is on the detector's machine: open it in a browser on that machine.")
    st.caption(
        "If the service has a token, type it into the page's Token field: the dashboard never hands its own "
        "token to a browser."
    )
    st.subheader("Streams published from browsers")
    st.fragment(streams_list, run_every=STREAMS_REFRESH_S)(
        db, target.detector.session.session_id, target.control, ("whip",)
    )
