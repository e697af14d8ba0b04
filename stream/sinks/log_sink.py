"""The log sink: verdict changes, alerts and finished clips as log lines."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from stream.records import Alert, Event, FinishedClip, Verdict

log = logging.getLogger("deepfake_stream")


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
