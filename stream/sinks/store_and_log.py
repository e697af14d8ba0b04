"""Where the loop's events go: a small `Sink` Protocol, the store sink (which owns the session and links alerts to
their clips) and a log sink. Metrics and webhooks plug in beside them."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Protocol

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

log = logging.getLogger("deepfake_stream")


class Sink(Protocol):
    """Receives one loop iteration's events, in the order they happened."""

    def send(self, events: Sequence[Event]) -> None: ...

    def close(self) -> None: ...


class StoreSink:
    """Writes events to the score store under one session and commits once per iteration."""

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


class LogSink:
    """Verdict changes, alerts and finished clips as log lines."""

    def send(self, events: Sequence[Event]) -> None:
        for event in events:
            match event:
                case Verdict():
                    log.info(
                        "%s face #%d: %s (rolling p_fake %.2f)",
                        event.stream_id,
                        event.track_id,
                        event.state.value,
                        event.rolling_p_fake,
                    )
                case Alert():
                    log.warning(
                        "ALERT %s face #%d turned FAKE (p_fake %.2f)", event.stream_id, event.track_id, event.p_fake
                    )
                case FinishedClip():
                    log.info(
                        "evidence clip for %s face #%d: %s (%d frames)",
                        event.alert.stream_id,
                        event.alert.track_id,
                        event.path,
                        event.frames,
                    )

    def close(self) -> None:
        pass
