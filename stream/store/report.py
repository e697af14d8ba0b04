"""A run's report, read back from the store: per stream its status, frames, faces and one overall verdict with the
rule that made it. One versioned schema for `run_stream.py --report` and the dashboard's download."""

from __future__ import annotations

import bisect
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Any

from model.labels import UNCALIBRATED_WARNING
from stream.config import VerdictPolicy
from stream.records import FaceSummary, StopReason, StreamState, VerdictState
from stream.store.base import ScoreReader
from stream.store.records import SessionRow, StreamRow

REPORT_SCHEMA = "deepfake-stream/report/1"

# A stream's status: how its source ended (or that it is still running), or that it showed no face.
STATUS_OF_STATE = {
    StreamState.FAILED: "failed",
    StreamState.LOST: "lost",
    StreamState.TRUNCATED: "truncated",
    StreamState.INTERRUPTED: "interrupted",
    StreamState.STARTING: "running",
    StreamState.LIVE: "running",
    StreamState.RECONNECTING: "running",
}


@dataclass(frozen=True)
class FaceReport:
    track_id: int
    status: str  # "scored" | "not_scored"
    note: str  # why a face was not scored, else ""
    first_t_media: float | None
    last_t_media: float | None
    crops: int | None  # None for runs stored before crops were kept
    frames_scored: int  # window scores
    fake_windows: int  # window scores given while the face's verdict was FAKE
    verdict: str  # the face's final verdict
    mean_p_fake: float | None
    max_p_fake: float | None


@dataclass(frozen=True)
class StreamReport:
    stream_id: str
    source: str  # redacted: no credentials
    kind: str
    status: str  # ok | truncated | failed | no_faces | interrupted | running
    error: str | None
    frames_read: int
    frames_scored: int  # frames with at least one window score
    verdict: str  # FAKE | REAL | UNSURE
    verdict_rule: str  # the rule that gave the verdict, in words
    faces: list[FaceReport]
    stop_reason: str | None = None  # interrupted: what stopped it (duration, ctrl-c, sigterm, api, run-ended)
    frames_expected: int | None = None  # a file's frame count (None: unknown, or a live source)
    percent_read: float | None = None  # frames read in percent of frames_expected

    def stopped_line(self) -> str | None:
        """`interrupted at 12% of call.mp4 (frame 150) by --duration` for a stream cut short, else None."""
        if self.status != "interrupted":
            return None
        share = "" if self.percent_read is None else f"{self.percent_read:.0f}% of "
        by = "" if self.stop_reason is None else f" by {StopReason(self.stop_reason).said}"
        return f"interrupted at {share}{self.source} (frame {self.frames_read}){by}"

    def status_text(self) -> str:
        """The status as the summary says it: `interrupted by --duration at 12%`, `ok`, `truncated`, …"""
        if self.status != "interrupted":
            return self.status
        by = "" if self.stop_reason is None else f" by {StopReason(self.stop_reason).said}"
        return f"interrupted{by}" + ("" if self.percent_read is None else f" at {self.percent_read:.0f}%")


@dataclass(frozen=True)
class Report:
    schema: str
    session_id: str
    started_at: str  # ISO 8601, UTC
    ended_at: str | None
    checkpoint: str
    calibrated: bool
    warning: str | None  # the uncalibrated warning, when it applies
    settings: dict[str, Any]
    streams: list[StreamReport]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _iso(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _fake_windows(reader: ScoreReader, session_id: str, face: FaceSummary) -> tuple[int, set[int]]:
    """Window scores given while the face was FAKE (its verdict history says when), and its scored frames."""
    scores = reader.scores(session_id, face.stream_id, face.track_id)
    changes = reader.verdicts(session_id, face.stream_id, face.track_id)
    starts = [change.since for change in changes]
    fake = 0
    for score in scores:
        at = bisect.bisect_right(starts, score.t_scored) - 1
        fake += at >= 0 and changes[at].state is VerdictState.FAKE
    return fake, {score.frame_index for score in scores}


def _face_report(face: FaceSummary, fake_windows: int, window: int) -> FaceReport:
    scored = face.frames_scored > 0
    note = ""
    if not scored:
        seen = f"seen in {face.crops} of" if face.crops is not None else "seen in fewer than"
        note = f"not scored: {seen} the {window} frames a window needs"
    return FaceReport(
        track_id=face.track_id,
        status="scored" if scored else "not_scored",
        note=note,
        first_t_media=face.first_t_media,
        last_t_media=face.last_t_media,
        crops=face.crops,
        frames_scored=face.frames_scored,
        fake_windows=fake_windows,
        verdict=str(face.verdict),
        mean_p_fake=face.mean_p_fake,
        max_p_fake=face.max_p_fake,
    )


def overall_verdict(faces: list[FaceReport], calibrated: bool, fake_windows_needed: int) -> tuple[str, str]:
    """One verdict for a stream and the rule that made it: FAKE when any face was FAKE for at least
    `fake_windows_needed` window scores; REAL when every scored face ended REAL; UNSURE otherwise."""
    if not calibrated:
        return "UNSURE", f"{UNCALIBRATED_WARNING}: every verdict is UNSURE"
    flagged = [f for f in faces if f.fake_windows >= fake_windows_needed]
    if flagged:
        worst = max(flagged, key=lambda f: f.fake_windows)
        return "FAKE", (
            f"face {worst.track_id} was FAKE for {worst.fake_windows} window scores "
            f"(FAKE needs at least {fake_windows_needed}: verdicts.overall_fake_windows)"
        )
    scored = [f for f in faces if f.status == "scored"]
    if not scored:
        return "UNSURE", "no face was scored" if faces else "no face was found"
    if all(f.verdict == "REAL" for f in scored):
        return "REAL", f"every scored face ended REAL and none was FAKE for {fake_windows_needed} window scores"
    unsure = [f.track_id for f in scored if f.verdict != "REAL"]
    return "UNSURE", f"face(s) {', '.join(map(str, unsure))} ended without a REAL verdict"


def _stream_report(
    reader: ScoreReader, session: SessionRow, stream: StreamRow, faces: list[FaceSummary], fake_needed: int
) -> StreamReport:
    reports, frames = [], set()
    for face in faces:
        fake, scored_frames = _fake_windows(reader, session.session_id, face)
        frames |= scored_frames
        reports.append(_face_report(face, fake, session.window))
    health = stream.health
    status = "failed" if health is None else STATUS_OF_STATE.get(health.state, "ok")
    if status == "ok" and not faces:
        status = "no_faces"
    verdict, rule = overall_verdict(reports, session.calibrated, fake_needed)
    return StreamReport(
        stream_id=stream.stream_id,
        source=stream.source,
        kind=stream.kind,
        status=status,
        error=None if health is None else health.last_error,
        frames_read=0 if health is None else health.frames_read,
        frames_scored=len(frames),
        verdict=verdict,
        verdict_rule=rule,
        faces=reports,
        stop_reason=None if health is None or health.stop_reason is None else str(health.stop_reason),
        frames_expected=None if health is None else health.frames_expected,
        percent_read=None if health is None or health.percent_read is None else round(health.percent_read, 1),
    )


def build_report(reader: ScoreReader, session_id: str, stream_ids: Collection[str] | None = None) -> Report:
    """The report of one stored session (finished or still running); `stream_ids`: of those streams only (an
    upload's report is its session's report with its one stream)."""
    sessions = {s.session_id: s for s in reader.sessions()}
    if session_id not in sessions:
        raise KeyError(f"no session {session_id!r} in the store")
    session = sessions[session_id]
    config = reader.session_config(session_id) or {}
    fake_needed = int(config.get("verdicts", {}).get("overall_fake_windows", VerdictPolicy().overall_fake_windows))
    summaries = reader.face_summaries(session_id)
    streams = [
        _stream_report(reader, session, stream, [f for f in summaries if f.stream_id == stream.stream_id], fake_needed)
        for stream in reader.streams(session_id)
        if stream_ids is None or stream.stream_id in stream_ids
    ]
    return Report(
        schema=REPORT_SCHEMA,
        session_id=session_id,
        started_at=_iso(session.started_at) or "",
        ended_at=_iso(session.ended_at),
        checkpoint=session.checkpoint,
        calibrated=session.calibrated,
        warning=None if session.calibrated else UNCALIBRATED_WARNING,
        settings={
            "window": session.window,
            "stride": session.stride,
            "window_mode": session.window_mode,
            "threshold": session.threshold,
            "hysteresis": session.hysteresis,
            "overall_fake_windows": fake_needed,
            "crop_geometry": config.get("crop_geometry"),
            "device": session.device,
            "engine": session.engine,
            "window_warning": config.get("window_warning"),
        },
        streams=streams,
    )
