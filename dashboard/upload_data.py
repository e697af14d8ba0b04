"""What the "Analyse a video" page reads from the store: past uploads (streams of kind `upload` of every session) with
their reports, and an upload's faces as a table for its CSV. Reads only; nothing here renders."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from dashboard import data
from stream.store import Report, ScoreReader, StreamReport, StreamRow, build_report

UPLOAD_KIND = "upload"
FINAL_STATES = ("ended", "truncated", "interrupted", "failed", "lost")  # a stream's states once it has stopped


@dataclass(frozen=True)
class PastUpload:
    """One upload in the store with its report's verdict and status."""

    session_id: str
    upload_id: str
    file_name: str
    t: float | None  # when its last health was written (about when it ended); None before any
    finished: bool  # its stream has ended (done, failed, truncated, interrupted or lost)
    stream: StreamReport

    @property
    def key(self) -> str:
        return f"{self.session_id}/{self.upload_id}"


def finished(row: StreamRow | None) -> bool:
    return row is not None and row.health is not None and str(row.health.state) in FINAL_STATES


def upload_row(reader: ScoreReader, session_id: str, upload_id: str) -> StreamRow | None:
    return next((s for s in reader.streams(session_id) if s.stream_id == upload_id), None)


def upload_report(reader: ScoreReader, session_id: str, upload_id: str) -> Report:
    """The upload's report: its session's report with its one stream, as the service and `--report` give it."""
    return build_report(reader, session_id, [upload_id])


def past_uploads(reader: ScoreReader) -> list[PastUpload]:
    """Every upload in the store, newest session first (one report per session, not one per upload)."""
    rows = reader.streams_of_kind(UPLOAD_KIND)
    by_session: dict[str, list[StreamRow]] = {}
    for row in rows:
        by_session.setdefault(row.session_id, []).append(row)
    reports: dict[tuple[str, str], StreamReport] = {}
    for session_id, streams in by_session.items():
        report = build_report(reader, session_id, [s.stream_id for s in streams])
        reports.update({(session_id, s.stream_id): s for s in report.streams})
    uploads = [
        PastUpload(
            session_id=row.session_id,
            upload_id=row.stream_id,
            file_name=row.source,
            t=row.health.t if row.health is not None else None,
            finished=finished(row),
            stream=reports[(row.session_id, row.stream_id)],
        )
        for row in rows
        if (row.session_id, row.stream_id) in reports
    ]
    # Within a session, newest first too (ended ones by when they ended; one still running first).
    return sorted(uploads, key=lambda u: (u.t is None, u.t or 0.0), reverse=True)


PAST_COLUMNS = ["file", "ended", "status", "verdict", "faces", "frames_read", "upload"]
FINAL_UPLOAD_STATES = ("done", "failed")  # the service's upload states once it has ended
UNFINISHED = "unfinished"  # not ended in the store, and no running detector says more


def service_state(body: Mapping[str, Any]) -> str:
    """An upload's state as the service answers it: `queued (2 ahead)`, `running`, or any other state as it comes."""
    state = str(body.get("state") or "unknown")
    position = body.get("queue_position")
    if state == "queued" and isinstance(position, int) and not isinstance(position, bool):
        return f"queued ({position} ahead)" if position > 0 else "queued (next)"
    return state


def upload_status(upload: PastUpload, live: Mapping[str, Mapping[str, Any]]) -> str:
    """What an upload is now: the running detector's word while it has not ended (`live`: the service's uploads by
    `SESSION/UPLOAD`), else how it ended in the store; `unfinished` when neither says."""
    body = live.get(upload.key)
    if body is not None and str(body.get("state")) not in FINAL_UPLOAD_STATES:
        return service_state(body)
    if upload.finished:
        return upload.stream.status
    if body is not None:  # ended, and the store has not caught up yet
        return str(body.get("status") or body.get("state"))
    return UNFINISHED


def waiting(uploads: Sequence[PastUpload], live: Mapping[str, Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The service's uploads not in the store yet (queued, or just starting), in its order."""
    known = {u.key for u in uploads}
    return [body for key, body in live.items() if key not in known]


def past_frame(uploads: Sequence[PastUpload], live: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """The past uploads as a table, the ones the service holds but has not started first."""
    live = live or {}
    rows = [
        [str(body.get("file_name", "")), "", service_state(body), "", 0, 0, str(body.get("upload_id", ""))]
        for body in waiting(uploads, live)
    ]
    rows += [
        [
            u.file_name,
            "" if u.t is None or not u.finished else data.wall_time(u.t, with_date=True),
            upload_status(u, live),
            u.stream.verdict,
            len(u.stream.faces),
            u.stream.frames_read,
            u.upload_id,
        ]
        for u in uploads
    ]
    return pd.DataFrame(rows, columns=PAST_COLUMNS)


FACE_COLUMNS = [
    "face",
    "status",
    "first_media_s",
    "last_media_s",
    "window_scores",
    "fake_windows",
    "verdict",
    "mean_p_fake",
    "max_p_fake",
    "note",
]


def faces_frame(stream: StreamReport) -> pd.DataFrame:
    """The upload's faces as its report gives them (the CSV download)."""
    return pd.DataFrame(
        [
            [
                f.track_id,
                f.status,
                f.first_t_media,
                f.last_t_media,
                f.frames_scored,
                f.fake_windows,
                f.verdict,
                f.mean_p_fake,
                f.max_p_fake,
                f.note,
            ]
            for f in stream.faces
        ],
        columns=FACE_COLUMNS,
    )
