"""The "Analyse a video" page: send a video to the detector's service, follow it while it is scored, then show its
report (one overall verdict, each face with its timeline, the alerts with their clips, CSV and JSON); past uploads
stay listed and can be reopened.

The upload itself and its progress go through the service (dashboard/control.py); the report, faces, scores and
alerts are read from the store, so a past upload opens the same way when no detector is running.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import streamlit as st

from dashboard import data, upload_data, views
from dashboard.charts import timeline_chart
from dashboard.control import Control, ControlError
from dashboard.detectors import Target
from dashboard.verdicts import badge
from stream.store import FaceReport, FaceRow, Report, ScoreReader, SessionRow, StoreError, StreamReport

UPLOAD_TYPES = ["mp4", "avi", "mov", "mkv", "webm"]
PROGRESS_REFRESH_S = 0.5
PAST_REFRESH_S = 2.0  # the past uploads table, while one of them has not ended
OPEN_KEY = "upload:open"  # "SESSION/UPLOAD" of the upload shown
SENT_KEY = "upload:sent"  # {file_id: upload id or None}: each file chosen in the uploader is sent once
PICK_KEY = "upload:pick"
FACE_COLUMNS = 2


def page(db: Path, reader: ScoreReader | None, target: Target) -> None:
    st.title("Analyse a video")
    uploader(target)
    opened = st.session_state.get(OPEN_KEY)
    if reader is not None and isinstance(opened, str) and "/" in opened:
        session_id, upload_id = opened.split("/", 1)
        with st.container(key="upload-result"):
            show_upload(db, reader, session_id, upload_id, target)
    st.subheader("Past uploads")
    if reader is None:
        st.caption("no store yet")
        return
    live = live_uploads(target)
    moving = any(not u.finished for u in upload_data.past_uploads(reader)) or bool(live)
    st.fragment(_past_part, run_every=PAST_REFRESH_S if moving else None)(db, target)


def live_uploads(target: Target) -> dict[str, dict[str, Any]]:
    """The running detector's uploads by `SESSION/UPLOAD` with their state (empty when none answers)."""
    if target.control is None:
        return {}
    try:
        bodies = target.control.uploads()
    except ControlError:
        return {}
    return {f"{b.get('session_id')}/{b.get('upload_id')}": b for b in bodies}


def _past_part(db: Path, target: Target) -> None:
    """The past uploads table, redrawn while any of them has not ended (the store and the service read afresh)."""

    def draw(reader: ScoreReader | None) -> None:
        if reader is None:
            st.caption("no store yet")
        else:
            past_uploads(reader, live_uploads(target))

    try:
        with data.open_store(db) as reader:
            draw(reader)
    except StoreError as error:
        st.error(str(error), icon=":material/error:")


def uploader(target: Target) -> None:
    """The cap the service reports, then the file uploader; a new file is sent once, as it is chosen."""
    control = target.control
    limits = None
    if control is None:
        st.info(target.reason or "no detector service", icon=":material/block:")
    else:
        try:
            limits = control.limits()
        except ControlError as error:
            st.error(str(error), icon=":material/error:")
    if limits is not None:
        st.caption(
            f"Up to **{limits.max_mb:g} MB** per video (the detector's limit, `service.upload_max_mb`) · "
            f"{', '.join(UPLOAD_TYPES)} · scored by the detector at {control.url if control else ''}"
        )
    chosen = st.file_uploader(
        "Video to analyse",
        type=UPLOAD_TYPES,
        key="upload:file",
        disabled=limits is None,
        max_upload_size=_widget_cap(limits.max_mb) if limits is not None else None,
        help="Sent to the detector as it is chosen; it is scored with the time live cameras leave free.",
    )
    # Each file chosen is sent once: its upload id, or the one line that said why it was not taken.
    sent: dict[str, str] = st.session_state.setdefault(SENT_KEY, {})
    if chosen is None or control is None or limits is None:
        return
    if chosen.file_id in sent:
        if not sent[chosen.file_id].startswith("upload-"):
            st.error(sent[chosen.file_id], icon=":material/error:")
        return
    if chosen.size > limits.max_bytes:
        size = f"{chosen.size / 2**20:.1f} MB"
        sent[chosen.file_id] = f"{chosen.name} is {size}: over the {limits.max_mb:g} MB an upload may send"
        st.error(sent[chosen.file_id], icon=":material/error:")
        return
    chosen.seek(0)
    with st.spinner(f"sending {chosen.name} to the detector…"):
        try:
            progress = control.upload(chosen, chosen.size, chosen.name)
        except ControlError as error:
            sent[chosen.file_id] = f"{chosen.name}: {error}"
            st.error(sent[chosen.file_id], icon=":material/error:")
            return
    sent[chosen.file_id] = progress.upload_id
    st.session_state[OPEN_KEY] = f"{progress.session_id}/{progress.upload_id}"


def _widget_cap(service_mb: float) -> int:
    """The uploader's cap in whole MB: the service's, but never above what this Streamlit server takes per file
    (`server.maxUploadSize`, which dashboard/launch.py sets to the service's cap)."""
    return max(1, min(math.ceil(service_mb), int(st.get_option("server.maxUploadSize"))))


def show_upload(db: Path, reader: ScoreReader, session_id: str, upload_id: str, target: Target) -> None:
    """Progress while the upload is scored (its own detector answering), else its report from the store."""
    row = upload_data.upload_row(reader, session_id, upload_id)
    ours = target.detector is not None and target.detector.session.session_id == session_id
    if not upload_data.finished(row) and ours and target.control is not None:
        try:
            progress = target.control.upload_progress(upload_id)
        except ControlError as error:
            st.error(str(error), icon=":material/error:")
            return
        if not progress.finished:
            st.fragment(_progress, run_every=PROGRESS_REFRESH_S)(target.control, upload_id)
            return
        row = upload_data.upload_row(reader, session_id, upload_id)
        if row is None:  # never became a stream: not a video
            st.error(f"{progress.file_name}: {progress.error or 'failed'}", icon=":material/error:")
            return
    if row is None:
        st.info(f"upload `{upload_id}` is not in the store")
        return
    session = next((s for s in reader.sessions() if s.session_id == session_id), None)
    if session is None:
        st.info(f"the run of upload `{upload_id}` is no longer in the store")
        return
    report_view(db, reader, session, upload_id, stopped=not upload_data.finished(row))


def _progress(control: Control, upload_id: str) -> None:
    """Polls the service; once the upload has ended, redraws the page with its report."""
    try:
        progress = control.upload_progress(upload_id)
    except ControlError as error:
        st.error(str(error), icon=":material/error:")
        return
    if progress.finished:
        st.rerun(scope="app")
    fraction = progress.fraction
    of = f" of {progress.frames_expected}" if progress.frames_expected else ""
    pace = f" · {progress.pace}" if progress.pace else ""
    st.progress(
        0.0 if fraction is None else fraction,
        text=f"{progress.state}: {progress.file_name}, {progress.frames_done}{of} frames scored{pace}",
    )


def report_view(db: Path, reader: ScoreReader, session: SessionRow, upload_id: str, stopped: bool = False) -> None:
    """The upload's report: overall verdict with its rule, the faces, the alerts, and the downloads."""
    report = upload_data.upload_report(reader, session.session_id, upload_id)
    if not report.streams:
        st.info(f"upload `{upload_id}` has no report")
        return
    stream = report.streams[0]
    views.uncalibrated_banner(session)
    with st.container(border=True, key="upload-verdict"):
        st.markdown(f"#### {badge(stream.verdict)} overall verdict for **{stream.source}**")
        st.markdown(stream.verdict_rule)
        st.caption(
            f"{stream.status} · {stream.frames_read} frames read, {stream.frames_scored} scored · "
            f"{len(stream.faces)} face{'' if len(stream.faces) == 1 else 's'} · upload `{upload_id}` · run started "
            f"{data.wall_time(session.started_at, with_date=True)}"
        )
    if stopped:
        st.warning("the detector stopped before this upload was finished: this is as far as it got")
    if stream.error:
        st.warning(stream.error)
    faces = {f.track_id: f for f in reader.faces(session.session_id, upload_id)}
    if not stream.faces:
        st.info("no face was found in this video")
    for start in range(0, len(stream.faces), FACE_COLUMNS):
        columns = st.columns(FACE_COLUMNS)
        for column, face in zip(columns, stream.faces[start : start + FACE_COLUMNS], strict=False):
            with column:
                face_card(reader, session, face, faces.get(face.track_id))
    alerts = reader.alerts(session.session_id, upload_id)
    if alerts:
        st.markdown("**Alerts**")
        for alert in alerts[: views.MAX_ALERTS]:
            views.alert_item(alert, db, is_file=True)
    downloads(report, stream, upload_id)


def face_card(reader: ScoreReader, session: SessionRow, face: FaceReport, row: FaceRow | None) -> None:
    """Thumbnail, verdict, mean and max p(fake), and the window scores over media time."""
    with st.container(border=True, key=f"upload-face-{face.track_id}"):
        thumb, text = st.columns([1, 4])
        with thumb:
            views.picture(row.thumbnail_jpeg if row else None, "no thumbnail", width=72)
        with text:
            st.markdown(f"**face #{face.track_id}** · {badge(face.verdict)}")
            if face.status == "not_scored":
                st.caption(face.note)
            else:
                mean = "—" if face.mean_p_fake is None else f"{face.mean_p_fake:.3f}"
                high = "—" if face.max_p_fake is None else f"{face.max_p_fake:.3f}"
                st.markdown(f"mean p(fake) **{mean}** · max p(fake) **{high}**")
            span = (
                f"media {face.first_t_media:.2f}–{face.last_t_media:.2f} s"
                if face.first_t_media is not None and face.last_t_media is not None
                else "no media time"
            )
            st.caption(f"{face.frames_scored} window scores · {face.fake_windows} while FAKE · {span}")
        if row is None or face.status == "not_scored":
            return
        scores = data.scores_frame(reader, session.session_id, row)
        if not scores.empty:
            st.altair_chart(timeline_chart(scores, True, session.threshold, session.hysteresis), width="stretch")
            if face.frames_scored > len(scores):
                st.caption(f"newest {len(scores)} of {face.frames_scored} window scores")


def downloads(report: Report, stream: StreamReport, upload_id: str) -> None:
    """The faces as CSV, and the report (the document `run_stream.py --report` writes) as JSON."""
    csv_cell, json_cell, _ = st.columns([1, 1, 3])
    csv_cell.download_button(
        "Download faces (CSV)",
        upload_data.faces_frame(stream).to_csv(index=False).encode(),
        file_name=f"faces-{upload_id}.csv",
        mime="text/csv",
        on_click="ignore",
        key=f"upload:csv:{report.session_id}:{upload_id}",
    )
    json_cell.download_button(
        "Download report (JSON)",
        data.report_json(report),
        file_name=f"report-{upload_id}.json",
        mime="application/json",
        on_click="ignore",
        key=f"upload:json:{report.session_id}:{upload_id}",
    )


def _open(key: str) -> None:
    picked = st.session_state.get(key)
    if picked:
        st.session_state[OPEN_KEY] = picked


def past_uploads(reader: ScoreReader, live: dict[str, dict[str, Any]] | None = None) -> None:
    """Every upload in the store (and the ones the service holds but has not started), newest first, each with what
    it is now (`live`: the running detector's word), and a picker that opens one."""
    live = live or {}
    uploads = upload_data.past_uploads(reader)
    if not uploads and not live:
        st.caption("no uploads yet")
        return
    st.dataframe(upload_data.past_frame(uploads, live), hide_index=True, width="stretch", key="upload:past")
    labels = {
        u.key: f"{u.file_name} · {u.stream.verdict} · {upload_data.upload_status(u, live)} · {u.upload_id}"
        for u in uploads
    }
    st.selectbox(
        "Reopen an upload",
        list(labels),
        index=None,
        format_func=labels.get,
        placeholder="choose an upload to show its report",
        key=PICK_KEY,
        on_change=_open,
        args=(PICK_KEY,),
    )
