"""What the "Analyse a video" page reads from the store: past uploads (streams of kind `upload` of every session) with
their reports, and an upload's faces as a table for its CSV. Reads only; nothing here renders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


def past_frame(uploads: Sequence[PastUpload]) -> pd.DataFrame:
    """The past uploads as a table."""
    return pd.DataFrame(
        [
            [
                u.file_name,
                "" if u.t is None or not u.finished else data.wall_time(u.t, with_date=True),
                u.stream.status,
                u.stream.verdict,
                len(u.stream.faces),
                u.stream.frames_read,
                u.upload_id,
            ]
            for u in uploads
        ],
        columns=PAST_COLUMNS,
    )


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
