"""The final health of the loop's ended streams, each kept for a while after its end (`service.ended_keep_s`): a
long-running service forgets them in its snapshots (the store keeps them all)."""

from __future__ import annotations

import time

from stream.records import StreamHealth


class EndedHealth:
    """Ended streams' final health by stream id; `current()` leaves out (and forgets) those ended over `keep_s` ago."""

    def __init__(self, keep_s: float) -> None:
        if not keep_s > 0:
            raise ValueError(f"keep_s must be positive seconds, got {keep_s}")
        self._keep_s = keep_s
        self._ended: dict[str, tuple[float, StreamHealth]] = {}

    def __setitem__(self, stream_id: str, health: StreamHealth) -> None:
        self._ended[stream_id] = (time.monotonic(), health)

    def pop(self, stream_id: str, default: StreamHealth | None = None) -> StreamHealth | None:
        kept = self._ended.pop(stream_id, None)
        return default if kept is None else kept[1]

    def current(self) -> dict[str, StreamHealth]:
        cutoff = time.monotonic() - self._keep_s
        self._ended = {sid: kept for sid, kept in self._ended.items() if kept[0] >= cutoff}
        return {sid: health for sid, (_, health) in self._ended.items()}
