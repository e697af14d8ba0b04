"""Query rows → records, for both backends' readers: what each query selects (queries.py) and how a row of it becomes
its record. Most select their record's fields in its __init__ order (mapped by position: there can be many rows)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from stream.records import ClusterCamera, FaceSummary, StopReason, StreamState, VerdictState
from stream.store.records import AlertRow, FaceRow, FrameRow, HealthRow, ScoreRow, SessionRow, StreamRow, VerdictRow


def init_order(record: type) -> tuple[str, ...]:
    """A record's fields as its __init__ takes them: the positional ones, then the keyword-only ones."""
    return tuple(f.name for f in fields(record) if not f.kw_only) + tuple(f.name for f in fields(record) if f.kw_only)


SCORE_COLUMNS = init_order(ScoreRow)
FACE_COLUMNS = init_order(FaceRow)
VERDICT_COLUMNS = init_order(VerdictRow)
ALERT_COLUMNS = init_order(AlertRow)
FRAME_COLUMNS = init_order(FrameRow)
CAMERA_COLUMNS = init_order(ClusterCamera)
SESSION_COLUMNS = init_order(SessionRow)
STREAM_COLUMNS = tuple(name for name in init_order(StreamRow) if name != "health")  # then its latest health:
HEALTH_COLUMNS = tuple(name for name in init_order(HealthRow) if name != "stream_id")  # (mapped by name)

_CALIBRATED, _SOURCES = SESSION_COLUMNS.index("calibrated"), SESSION_COLUMNS.index("sources")
_VERDICT_STATE = VERDICT_COLUMNS.index("state")
if FACE_COLUMNS[7] != "verdict" or FACE_COLUMNS[13:] != ("crops", "crops_skipped"):
    raise TypeError(f"FaceRow's fields changed ({FACE_COLUMNS}): change `face_row` with them")
_STREAM_WIDTH, _STREAM_ID = len(STREAM_COLUMNS), STREAM_COLUMNS.index("stream_id")


def session_row(r: Sequence[Any]) -> SessionRow:
    values = list(r)
    values[_CALIBRATED] = bool(values[_CALIBRATED])
    values[_SOURCES] = json.loads(values[_SOURCES])
    return SessionRow(*values)


def stream_row(r: Sequence[Any]) -> StreamRow:
    health = None
    if r[_STREAM_WIDTH] is not None:
        values = dict(zip(HEALTH_COLUMNS, r[_STREAM_WIDTH:], strict=True))
        values["state"] = StreamState(values["state"])
        if values["stop_reason"] is not None:
            values["stop_reason"] = StopReason(values["stop_reason"])
        health = HealthRow(stream_id=r[_STREAM_ID], **values)
    return StreamRow(*r[:_STREAM_WIDTH], health=health)


def face_row(r: Sequence[Any]) -> FaceRow:
    # Its keyword-only fields spelled out: a ** dict would make each row ~25% slower to build.
    return FaceRow(*r[:7], VerdictState(r[7]), *r[8:13], crops=r[13], crops_skipped=r[14])


def verdict_row(r: Sequence[Any]) -> VerdictRow:
    v = _VERDICT_STATE
    return VerdictRow(*r[:v], VerdictState(r[v]), *r[v + 1 :])


def face_summary(r: Sequence[Any]) -> FaceSummary:
    """FaceSummary's fields in its order (computed columns: no names)."""
    return FaceSummary(*r[:7], VerdictState(r[7]), *r[8:])
