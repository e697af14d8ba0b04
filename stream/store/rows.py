"""Query rows → records, for both backends' readers: each query selects its columns in the order these take."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from stream.records import FaceSummary, StreamState, VerdictState
from stream.store.records import FaceRow, HealthRow, SessionRow, StreamRow, VerdictRow


def session_row(r: Sequence[Any]) -> SessionRow:
    """session_id, started_at, ended_at, last_active, checkpoint, calibrated, window, stride, window_mode,
    threshold, hysteresis, device, engine, sources (JSON), service_url."""
    return SessionRow(
        session_id=r[0],
        started_at=r[1],
        ended_at=r[2],
        last_active=r[3],
        checkpoint=r[4],
        calibrated=bool(r[5]),
        window=r[6],
        stride=r[7],
        window_mode=r[8],
        threshold=r[9],
        hysteresis=r[10],
        device=r[11],
        engine=r[12],
        sources=json.loads(r[13]),
        service_url=r[14],
    )


def stream_row(r: Sequence[Any]) -> StreamRow:
    """session_id, stream_id, source, kind, then its latest health (state, fps_in, fps_scored, frames_dropped,
    reconnects, last_error, t, frames_read, frames_thinned, crops_encoded, crops_skipped), NULL when it has none."""
    health = None
    if r[4] is not None:
        health = HealthRow(
            r[1],
            StreamState(r[4]),
            *r[5:11],
            frames_read=r[11],
            frames_thinned=r[12],
            crops_encoded=r[13],
            crops_skipped=r[14],
        )
    return StreamRow(*r[:4], health)


def face_row(r: Sequence[Any]) -> FaceRow:
    return FaceRow(*r[:7], VerdictState(r[7]), *r[8:13], crops=r[13], crops_skipped=r[14])


def verdict_row(r: Sequence[Any]) -> VerdictRow:
    return VerdictRow(*r[:3], VerdictState(r[3]), *r[4:])


def face_summary(r: Sequence[Any]) -> FaceSummary:
    return FaceSummary(*r[:7], VerdictState(r[7]), *r[8:])
