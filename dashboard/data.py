"""What the dashboard reads: the store's path, a session's status, and store rows as pandas frames, CSV and JSON.

Reads only, through `stream.store.ScoreReader` (the one thing the dashboard imports from the project). Nothing
here renders; `dashboard/views.py` does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from stream.config import LoopSettings, StoreSettings
from stream.config.store_location import StoreTarget, local_path, parse_store_target
from stream.store import (
    AlertRow,
    FaceRow,
    Report,
    ScoreReader,
    SessionRow,
    StoreError,
    StreamRow,
    build_report,
    open_reader,
)

DB_ENV = "DEEPFAKE_STREAM_DB"
DEFAULT_DB = StoreSettings().db  # the config's default store
# The detector commits every loop and writes stream health every second: this long without a write means it died.
STALE_AFTER_S = 5.0
# A face's chart shows at most its newest this many window scores, so one long-lived face cannot slow the page.
MAX_CHART_POINTS = 1000
LATEST = ""  # the session picker's value that follows the newest run
TIME_RANGES: dict[str, float | None] = {
    "whole session": None,
    "last 30 s": 30.0,
    "last 2 min": 120.0,
    "last 10 min": 600.0,
    "last hour": 3600.0,
}


def db_path(argv: Sequence[str], environ: Mapping[str, str]) -> StoreTarget:
    """The store to read: `-- --db PATH|URL` after the script, else $DEEPFAKE_STREAM_DB, else runs/deepfake.db.
    A `postgresql://` URL is a PostgreSQL store (read as a URL before any path handling); StoreError if unusable.

    Unknown arguments are ignored: under `AppTest` the script sees pytest's own command line.
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--db")
    known, _ = parser.parse_known_args(list(argv))
    value = known.db if known.db is not None else environ.get(DB_ENV) or DEFAULT_DB
    try:
        return parse_store_target(value)
    except ValueError as error:
        raise StoreError(str(error)) from None


def clips_folder(argv: Sequence[str], db: StoreTarget) -> Path:
    """The one folder the page plays evidence clips from: `-- --clips DIR` after the script (dashboard/launch.py
    passes the detector's `clips.directory`), else the detector's default: `clips` beside the store."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--clips")
    known, _ = parser.parse_known_args(list(argv))
    if known.clips:
        return Path(known.clips).resolve()
    return (local_path(db).parent / "clips").resolve()


def clip_file(clip: str, db: StoreTarget, folder: Path) -> Path | None:
    """The clip an alert names, only when it is a file inside the clips folder (symlinks followed, then checked): as
    stored, or relative to the store's folder. None otherwise: a stored path never opens any other file."""
    path = Path(clip)
    if not path.is_absolute():
        path = local_path(db).parent / path
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        return None
    return resolved if resolved.is_relative_to(folder) and resolved.is_file() else None


@contextlib.contextmanager
def open_store(path: StoreTarget) -> Iterator[ScoreReader | None]:
    """A reader for this page run, or None while a SQLite file does not exist; `StoreError` when it cannot be read
    (a PostgreSQL database no detector has written to yet reads as a store without sessions)."""
    if isinstance(path, Path) and not path.is_file():
        yield None
        return
    reader = open_reader(path)
    try:
        yield reader
    finally:
        reader.close()


@dataclass(frozen=True)
class SessionStatus:
    state: str  # "running" | "stopped" (never ended, silent for STALE_AFTER_S: the detector died) | "ended"
    age_s: float  # seconds since the session's last write

    @property
    def running(self) -> bool:
        return self.state == "running"


def session_status(session: SessionRow, now: float) -> SessionStatus:
    last = session.last_active if session.ended_at is None else max(session.ended_at, session.last_active)
    age = max(0.0, now - last)
    if session.ended_at is not None:
        return SessionStatus("ended", age)
    return SessionStatus("running" if age <= STALE_AFTER_S else "stopped", age)


def fingerprint(db: Path, choice: str) -> tuple[object, ...]:
    """What, when it changes, needs the whole page redrawn (`choice`: the session picker's value): the store
    appearing, a new run, the chosen run's state or its list of streams (the controls are drawn from them)."""
    try:
        with open_store(db) as reader:
            if reader is None:
                return ("no store",)
            sessions = reader.sessions()
            wanted = sessions[0].session_id if sessions and choice == LATEST else choice
            chosen = next((s for s in sessions if s.session_id == wanted), None)
            if chosen is None:
                return ("store", sessions[0].session_id if sessions else None)
            streams = tuple(s.stream_id for s in reader.streams(chosen.session_id))
    except StoreError as error:
        return ("error", str(error))
    state = session_status(chosen, time.time()).state
    return ("store", sessions[0].session_id, chosen.session_id, state, streams)


def wall_time(t: float, with_date: bool = False) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S", time.localtime(t))


def age_text(seconds: float) -> str:
    """`0.4 s`, `42 s`, `3 min 5 s`, `2 h 4 min`, `3 d 2 h`."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def session_label(session: SessionRow, now: float) -> str:
    """How the session picker names a run: start time, sources, status."""
    status = session_status(session, now)
    sources = ", ".join(session.sources) or "no sources"
    if len(sources) > 60:
        sources = sources[:57] + "..."
    state = {"running": "running", "stopped": "detector not running", "ended": "ended"}[status.state]
    return f"{wall_time(session.started_at, with_date=True)} · {sources} · {state}"


def since_t(session: SessionRow, range_s: float | None) -> float | None:
    """The wall-clock start of the chosen time range, counted back from the session's last write."""
    if range_s is None:
        return None
    last = session.last_active if session.ended_at is None else max(session.ended_at, session.last_active)
    return last - range_s


def overload_settings(reader: ScoreReader, session_id: str) -> LoopSettings:
    """The run's overload banner settings (`pipeline.overload_share`, `overload_window_s`) from the config it kept;
    the defaults for a run that kept none, or none that can be used."""
    pipeline = (reader.session_config(session_id) or {}).get("pipeline")
    keys = ("overload_share", "overload_window_s")
    try:
        return LoopSettings(**{key: float(pipeline[key]) for key in keys if key in pipeline})
    except (TypeError, ValueError):
        return LoopSettings()


def uses_media_time(stream: StreamRow | None) -> bool:
    """Files and uploads are analysed in media time (seconds into the file); live sources in wall time."""
    return stream is not None and stream.kind in ("file", "upload")


def _utc_offset_s() -> float:
    return float(time.localtime().tm_gmtoff)


def scores_frame(
    reader: ScoreReader,
    session_id: str,
    face: FaceRow,
    since: float | None = None,
    limit: int = MAX_CHART_POINTS,
) -> pd.DataFrame:
    """One face's newest window scores in frame order: frame_index, t_media (s), wall (local datetime), p_fake."""
    rows = reader.scores(session_id, face.stream_id, face.track_id, since_t=since, limit=limit)
    frame = pd.DataFrame(
        {
            "frame_index": [r.frame_index for r in rows],
            "t_media": pd.array([r.t_media for r in rows], dtype="Float64"),
            "t_capture": [r.t_capture for r in rows],
            "p_fake": [r.p_fake for r in rows],
        }
    )
    # Naive local datetimes: Vega-Lite shows them as they are, the same clock the page's captions use.
    frame["wall"] = pd.to_datetime(frame["t_capture"] + _utc_offset_s(), unit="s")
    return frame


def faces_in_range(faces: Sequence[FaceRow], since: float | None) -> tuple[list[FaceRow], list[FaceRow], int]:
    """(live faces, gone faces seen in the range, gone faces left out because they left before it)."""
    live = [f for f in faces if f.state == "live"]
    gone = [f for f in faces if f.state != "live"]
    shown = [f for f in gone if since is None or f.last_seen >= since]
    return live, shown, len(gone) - len(shown)


def alerts_in_range(alerts: Sequence[AlertRow], since: float | None) -> list[AlertRow]:
    """Alerts (already newest first) raised inside the range."""
    return [a for a in alerts if since is None or a.t >= since]


SUMMARY_COLUMNS = [
    "stream",
    "face",
    "first_media_s",
    "last_media_s",
    "first_seen",
    "last_seen",
    "frames_scored",
    "verdict",
    "mean_p_fake",
    "max_p_fake",
    "status",
]


def summaries_frame(reader: ScoreReader, report: Report) -> pd.DataFrame:
    """Per face: media time span, wall-clock span (ISO, local), window scores stored, final verdict, mean/max, and
    whether it was scored at all (the report's words)."""
    rows = reader.face_summaries(report.session_id)
    status = {(s.stream_id, f.track_id): f.note or "scored" for s in report.streams for f in s.faces}
    return pd.DataFrame(
        [
            [
                s.stream_id,
                s.track_id,
                s.first_t_media,
                s.last_t_media,
                wall_time(s.first_seen, with_date=True),
                wall_time(s.last_seen, with_date=True),
                s.frames_scored,
                str(s.verdict),
                s.mean_p_fake,
                s.max_p_fake,
                status.get((s.stream_id, s.track_id), "scored"),
            ]
            for s in rows
        ],
        columns=SUMMARY_COLUMNS,
    )


def summaries_csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def session_report(reader: ScoreReader, session_id: str) -> Report:
    """The run's report, exactly as `run_stream.py --report` writes it."""
    return build_report(reader, session_id)


def report_json(report: Report) -> bytes:
    return json.dumps(report.as_dict(), indent=2).encode()
