"""The store sink: writes the loop's events to the score store under one session and commits once per iteration."""

from __future__ import annotations

import time
from collections.abc import Sequence

from stream.records import (
    Alert,
    AnnotatedFrame,
    EncodedBatch,
    Event,
    FaceUpdate,
    FinishedClip,
    StageTimings,
    StreamHealth,
    StreamInfo,
    Verdict,
    WindowScore,
)
from stream.store import ScoreWriter


class StoreSink:
    """Writes events to the score store under one session and commits once per iteration. Critical: scores that
    cannot be written must not be silently dropped, so its errors end the run (see `SinkFanout`)."""

    critical = True

    def __init__(self, writer: ScoreWriter, session_id: str) -> None:
        self.writer = writer
        self.session_id = session_id

    def send(self, events: Sequence[Event]) -> None:
        scores = [e for e in events if isinstance(e, WindowScore)]
        self.writer.write_scores(scores)
        for event in events:
            self._write(event)
        self.writer.commit()

    def _write(self, event: Event) -> None:
        session, writer = self.session_id, self.writer
        match event:
            case StageTimings():
                # Once per health interval, streams or not: a service waiting for its first stream stays "running".
                writer.keep_alive(session)
            case WindowScore() | EncodedBatch():
                pass  # scores went in one batch above; batches are for live consumers (metrics)
            case StreamInfo():
                writer.add_stream(session, event)
            case FaceUpdate():
                writer.write_face(session, event)
            case Verdict():
                writer.write_verdict(session, event)
            case Alert():
                writer.write_alert(session, event)
            case FinishedClip():
                # Writing the alert again is idempotent and gives its id.
                writer.set_alert_clip(writer.write_alert(session, event.alert), str(event.path))
            case AnnotatedFrame():
                writer.write_frame(session, event)
            case StreamHealth():
                writer.write_health(session, event, time.time())

    def close(self) -> None:
        self.writer.commit()
