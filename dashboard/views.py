"""Rendering helpers: each draws one part of the page (banner, stream panel, face card, alert, summaries, empty
states) from store rows. Queries go through `dashboard.data`; nothing here writes anywhere."""

from __future__ import annotations

import hashlib
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from dashboard import data
from dashboard.charts import timeline_chart
from dashboard.verdicts import badge, shown_verdict
from model.labels import UNCALIBRATED_WARNING
from stream.config import LoopSettings
from stream.config.store_location import StoreTarget
from stream.store import AlertRow, FaceRow, HealthRow, ScoreReader, SessionRow, StreamRow

MAX_ALERTS = 20
FACE_COLUMNS = 2
STATE_COLOURS = {
    "starting": "blue",
    "live": "green",
    "reconnecting": "orange",
    "ended": "gray",
    "failed": "red",
    "lost": "red",
}


@dataclass(frozen=True)
class View:
    """What the reader chose in the sidebar; fragments get it as an argument and rerun with it."""

    db: Path
    session_id: str
    stream_ids: tuple[str, ...]  # the streams to show
    range_s: float | None  # None: the whole session
    threshold: float  # the page's threshold (the slider), not the detector's


def start_hint(db: StoreTarget) -> str:
    """A command to paste: the store quoted, so a PostgreSQL URL's `&` or a path's spaces survive the shell."""
    return (
        f"`python run_stream.py demo --db {shlex.quote(str(db))}` (or any SOURCE: a file, a webcam index, `rtsp://…`)"
    )


def no_database(db: Path) -> None:
    st.info(f"No score store at `{db}` yet: start the detector with {start_hint(db)}. This page updates by itself.")


def no_sessions(db: Path) -> None:
    st.info(f"The score store `{db}` has no runs yet: start the detector with {start_hint(db)}.")


def uncalibrated_banner(session: SessionRow) -> None:
    if not session.calibrated:
        st.error(
            f"**{UNCALIBRATED_WARNING}**: this run's checkpoint `{session.checkpoint}` carries no evaluated "
            "threshold (a seeded random model, or trained weights not yet evaluated), so its scores mean nothing yet "
            "and every verdict is UNSURE. Put a trained checkpoint in `weights/` (or calibrate yours with "
            "`python -m model.evaluate CHECKPOINT DATA --calibrate OUT`) and restart the detector.",
            icon=":material/warning:",
        )


def session_caption(session: SessionRow) -> None:
    calibration = "calibrated" if session.calibrated else "uncalibrated"
    st.caption(
        f"checkpoint `{session.checkpoint}` ({calibration}) · window {session.window} · stride {session.stride} · "
        f"mode {session.window_mode} · device {session.device} · engine {session.engine} · detector threshold "
        f"{session.threshold:.2f} ± {session.hysteresis:.2f} · session `{session.session_id}`"
    )


def session_status(session: SessionRow, status: data.SessionStatus, db: Path) -> None:
    started = data.wall_time(session.started_at, with_date=True)
    if status.state == "running":
        st.caption(f"live since {started}")  # (the parts below refresh themselves; this line does not)
    elif status.state == "ended":
        assert session.ended_at is not None
        ran = data.age_text(max(0.0, session.ended_at - session.started_at))
        st.caption(f"recorded run: {started}, ran {ran}, ended {data.age_text(status.age_s)} ago")
    else:
        st.warning(
            f"The detector is not running: its last write was {data.age_text(status.age_s)} ago and it never ended "
            f"this run. Showing the last data it wrote; start it again with {start_hint(db)}.",
            icon=":material/pause_circle:",
        )


def left_out_text(health: HealthRow) -> str:
    """What the detector gave up so far to keep up: live frames thinned evenly and face crops left out, round-robin."""
    total = health.crops_encoded + health.crops_skipped
    skipped = f"{100 * health.crops_skipped / total:.0f}%" if total else "none"
    return (
        f"{health.frames_thinned} frames thinned evenly (never below the tracking rate), crops skipped {skipped} "
        "(the encoder shared round-robin across faces)"
    )


def overload_banner(health: HealthRow, overload: LoopSettings) -> str | None:
    """The "overloaded" banner, only while more than `pipeline.overload_share` of the stream's frames were thinned or
    of its crops skipped over the last `pipeline.overload_window_s` (the run's own settings)."""
    if health.overload_share <= overload.overload_share:
        return None
    return (
        f"overloaded: {100 * health.overload_share:.0f}% of frames thinned or crops skipped in the last "
        f"{overload.overload_window_s:g} s; so far {left_out_text(health)}"
    )


def windows_metric(fps_scored: float, faces: int) -> tuple[str, str]:
    """The scored rate as a label and value that read beside "fps in": per face (`fps_scored` counts every face's
    window scores together)."""
    if faces < 1:
        return "windows/s", f"{fps_scored:.1f}"
    return "windows/s per face", f"{fps_scored / faces:.1f}"


def _health(stream: StreamRow, now: float, faces: int, overload: LoopSettings) -> None:
    """`faces`: the stream's faces in view; `overload`: the run's overload banner settings."""
    health = stream.health
    if health is None:
        st.caption("waiting for the first health report")
        return
    state = str(health.state)
    colour = STATE_COLOURS.get(state, "gray")
    in_view = "no face in view" if faces < 1 else f"{faces} face{'s' if faces != 1 else ''} in view"
    age = data.age_text(max(0.0, now - health.t))
    st.markdown(f"stream :{colour}-badge[{state}] · {in_view} · health reported {age} ago")
    cells = st.columns(4)
    cells[0].metric("fps in", f"{health.fps_in:.1f}")
    cells[1].metric(*windows_metric(health.fps_scored, faces))
    cells[2].metric("dropped", f"{health.frames_dropped}")
    cells[3].metric("reconnects", f"{health.reconnects}")
    banner = overload_banner(health, overload)
    if banner is not None:
        st.warning(banner, icon=":material/speed:")
    elif health.frames_thinned or health.crops_skipped:
        st.caption(left_out_text(health))
    if state == "reconnecting":
        st.warning(f"reconnecting (attempts so far: {health.reconnects}); last error: {health.last_error or '—'}")
    elif state == "failed":
        st.error(f"stream failed: {health.last_error or 'no error recorded'}")
    elif health.last_error:
        st.caption(f"last error: {health.last_error}")


def picture(jpeg: bytes | None, missing: str, **options: object) -> None:
    """A JPEG from the store, or a caption when there is none or it cannot be decoded (never a page error)."""
    if not jpeg:
        st.caption(missing)
        return
    try:
        st.image(jpeg, **options)  # type: ignore[arg-type]
    except (OSError, ValueError):  # PIL's UnidentifiedImageError is an OSError
        st.caption("picture unreadable")


def stream_panel(
    reader: ScoreReader, session_id: str, stream: StreamRow, now: float, overload: LoopSettings | None = None
) -> None:
    """The stream's latest annotated frame beside its health (`overload`: the run's banner settings)."""
    st.markdown(f"**{stream.stream_id}** · {stream.kind} · `{stream.source}`")
    frame_cell, health_cell = st.columns([1, 1])
    with frame_cell:
        frame = reader.latest_frame(session_id, stream.stream_id)
        if frame is None:
            st.info("no frame yet")
        else:
            age = data.age_text(max(0.0, now - frame.t))
            picture(frame.jpeg, "empty frame", caption=f"latest annotated frame, {age} ago", width="stretch")
    with health_cell:
        faces = sum(face.state == "live" for face in reader.faces(session_id, stream.stream_id))
        _health(stream, now, faces, overload or LoopSettings())


def streams_section(reader: ScoreReader, session: SessionRow, streams: dict[str, StreamRow], view: View) -> None:
    """Each chosen stream's latest annotated frame and health."""
    now = time.time()
    overload = data.overload_settings(reader, session.session_id)
    for stream_id in view.stream_ids:
        if stream_id in streams:
            stream_panel(reader, session.session_id, streams[stream_id], now, overload)


def card_key_of(stream_id: str) -> str:
    """A stream id as a widget-safe, unique key part (a CSS class name)."""
    slug = re.sub(r"[^A-Za-z0-9_-]", "_", stream_id)
    if slug != stream_id:
        slug += "-" + hashlib.sha1(stream_id.encode()).hexdigest()[:6]
    return slug


def card_key(face: FaceRow) -> str:
    """A widget-safe, unique key per face; the browser sees it as the CSS class `st-key-<key>`."""
    return f"face-{card_key_of(face.stream_id)}-{face.track_id}"


def _span(face: FaceRow, media_time: bool) -> str:
    if media_time and face.first_t_media is not None and face.last_t_media is not None:
        return f"media {face.first_t_media:.2f}–{face.last_t_media:.2f} s"
    return f"seen {data.wall_time(face.first_seen)}–{data.wall_time(face.last_seen)}"


def face_card(reader: ScoreReader, session: SessionRow, face: FaceRow, stream: StreamRow | None, view: View) -> None:
    """Thumbnail, verdict (re-coloured to the page threshold), rolling p(fake) and the window-score timeline."""
    verdict = shown_verdict(
        str(face.verdict),
        face.rolling_p_fake,
        view.threshold,
        session.threshold,
        session.hysteresis,
        session.calibrated,
    )
    media_time = data.uses_media_time(stream)
    with st.container(border=True, key=card_key(face)):
        thumb, text = st.columns([1, 4])
        with thumb:
            picture(face.thumbnail_jpeg, "no thumbnail", width=72)
        with text:
            gone = " · gone" if face.state != "live" else ""
            st.markdown(f"**face #{face.track_id}** · {face.stream_id}{gone} · {badge(verdict)}")
            score = "—" if face.rolling_p_fake is None else f"{face.rolling_p_fake:.3f}"
            st.markdown(f"rolling p(fake) **{score}**")
            notes = [f"{face.frames_scored} window scores", _span(face, media_time)]
            if verdict != str(face.verdict):
                notes.append(f"detector's verdict {face.verdict} at {session.threshold:.2f}")
            elif face.state != "live":
                notes.append("final verdict")
            st.caption(" · ".join(notes))
        scores = data.scores_frame(reader, session.session_id, face, data.since_t(session, view.range_s))
        if scores.empty:
            st.caption("no window scores in this time range")
        else:
            st.altair_chart(timeline_chart(scores, media_time, view.threshold, session.hysteresis), width="stretch")
            if face.frames_scored > len(scores) and view.range_s is None:
                st.caption(f"newest {len(scores)} of {face.frames_scored} window scores")


def _card_grid(
    reader: ScoreReader, session: SessionRow, faces: list[FaceRow], streams: dict[str, StreamRow], view: View
) -> None:
    for start in range(0, len(faces), FACE_COLUMNS):
        columns = st.columns(FACE_COLUMNS)
        for column, face in zip(columns, faces[start : start + FACE_COLUMNS], strict=False):
            with column:
                face_card(reader, session, face, streams.get(face.stream_id), view)


def faces_section(reader: ScoreReader, session: SessionRow, streams: dict[str, StreamRow], view: View) -> None:
    """Per stream: the faces in the picture now, then the ones that left (with their final verdicts)."""
    since = data.since_t(session, view.range_s)
    for stream_id in view.stream_ids:
        if len(view.stream_ids) > 1:
            st.markdown(f"#### {stream_id}")
        live, gone, older = data.faces_in_range(reader.faces(session.session_id, stream_id), since)
        if not live and not gone:
            st.info("no faces yet" if not older else f"no faces in this time range ({older} earlier)")
            continue
        if live:
            _card_grid(reader, session, live, streams, view)
        elif gone:
            st.caption("no face in the picture now")
        if gone:
            st.markdown("**Faces that left**")
            _card_grid(reader, session, gone, streams, view)
        if older:
            st.caption(f"{older} faces left before this time range")


def alert_item(alert: AlertRow, db: Path, is_file: bool = False) -> None:
    """One alert: stream, face, time (media time too for files), score, and its evidence clip once linked."""
    kind = "turned FAKE" if alert.kind == "turned_fake" else alert.kind
    when = data.wall_time(alert.t, with_date=time.time() - alert.t > 86400)
    if is_file and alert.t_media is not None:
        when = f"at {alert.t_media:.2f} s into the file ({when})"
    with st.container(border=True):
        st.markdown(
            f"{badge('FAKE')} **{alert.stream_id}** · face #{alert.track_id} {kind} · {when} · "
            f"p(fake) **{alert.p_fake:.3f}**"
        )
        if alert.clip_path is None:
            st.caption("evidence clip: not written yet")
            return
        path = data.clip_file(alert.clip_path, db, data.clips_folder(sys.argv[1:], db))
        if path is None:
            st.caption("evidence clip unavailable: not (yet) in this dashboard's clips folder")
        else:
            st.video(str(path))


def alerts_section(reader: ScoreReader, session: SessionRow, streams: dict[str, StreamRow], view: View) -> None:
    """Alerts of the chosen streams in the time range, newest first."""
    alerts = [a for a in reader.alerts(session.session_id) if a.stream_id in view.stream_ids]
    shown = data.alerts_in_range(alerts, data.since_t(session, view.range_s))
    if not shown:
        st.caption("no alerts" + (" in this time range" if alerts else ""))
        return
    for alert in shown[:MAX_ALERTS]:
        stream = streams.get(alert.stream_id)
        alert_item(alert, view.db, is_file=data.uses_media_time(stream))
    if len(shown) > MAX_ALERTS:
        st.caption(f"{len(shown) - MAX_ALERTS} older alerts not shown")


def summaries_section(reader: ScoreReader, session: SessionRow) -> None:
    """Each stream's overall verdict with its rule, and every face of the run in one table; the table as CSV and
    the run's report (the schema `run_stream.py --report` writes) as JSON."""
    report = data.session_report(reader, session.session_id)
    for stream in report.streams:
        st.markdown(
            f"**{stream.stream_id}**: {badge(stream.verdict)} {stream.verdict_rule} · {stream.status}, "
            f"{stream.frames_read} frames read, {stream.frames_scored} scored"
        )
    frame = data.summaries_frame(reader, report)
    if frame.empty:
        st.caption("no faces in this run yet")
        return
    st.dataframe(frame, hide_index=True, width="stretch")
    name = f"faces-{session.session_id}"
    csv_cell, json_cell, _ = st.columns([1, 1, 4])
    csv_cell.download_button(
        "Download CSV", data.summaries_csv(frame), file_name=f"{name}.csv", mime="text/csv", on_click="ignore"
    )
    json_cell.download_button(
        "Download report (JSON)",
        data.report_json(report),
        file_name=f"report-{session.session_id}.json",
        mime="application/json",
        on_click="ignore",
    )
    st.caption("verdicts here are the detector's own (at its threshold); media times are seconds into each file")
