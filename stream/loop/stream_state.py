"""One stream as the loop keeps it: its source and cropper, its rates and tallies, and the health it reports."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from stream.capture.sources import Source
from stream.config import LoopSettings
from stream.faces.cropper import FaceCropper
from stream.loop.lookahead import LookAhead
from stream.loop.overload import BackgroundGate, OverloadMeter, thinned_of
from stream.loop.status_lines import status_line
from stream.loop.upload_share import yielded_of
from stream.records import Frame, StopReason, StreamHealth, StreamState, Track
from stream.timing import FpsMeter, span_rate

SCORED_FACES_KEPT = 64  # past this many faces remembered, the ones scored before the rate's window are forgotten


@dataclass
class LoopStream:
    """One stream's state, owned by the loop thread."""

    source: Source
    cropper: FaceCropper
    live: bool = False  # files replayed as fast as possible are never thinned or skipped: they wait
    background: bool = False  # an upload: its frames wait for time the live streams leave (stream/overload.py)
    lookahead: LookAhead | None = None  # a file's finder thread, which then owns the cropper (stream/loop/lookahead.py)
    tracks: tuple[Track, ...] = ()  # the tracks of the last frame processed (annotation, status line)
    interval_s: float | None = None  # a live stream's frame interval, from the frames it delivered
    fps_in: FpsMeter = field(default_factory=FpsMeter)
    fps_scored: FpsMeter = field(default_factory=FpsMeter)
    frames_processed: int = 0
    frames_thinned: int = 0
    frames_yielded: float = 0.0  # of those, thinned while uploads took their share (stream/loop/upload_share.py)
    crops_encoded: int = 0
    crops_skipped: int = 0
    windows_scored: int = 0
    first_frame_at: float | None = None  # monotonic time the loop took this stream's first frame ...
    last_frame_at: float | None = None  # ... and its latest
    previous_frame_at: float | None = None  # ... and the one before
    last_annotated: float = 0.0
    last_processed: tuple[int, float] | None = None  # a live stream's last frame processed: index, capture time
    overload: OverloadMeter = field(default_factory=OverloadMeter)  # pipeline.overload_window_s
    _scored_at: dict[int, float] = field(default_factory=dict)  # track id -> its latest window score (monotonic)

    def took_frame(self, at: float | None = None) -> None:
        """The loop took a frame (`at`: when, monotonic; a frame found ahead was taken when the finder took it)."""
        now = time.monotonic() if at is None else at
        self.fps_in.tick(now)
        self.frames_processed += 1
        if self.first_frame_at is None:
            self.first_frame_at = now
        self.previous_frame_at, self.last_frame_at = self.last_frame_at, now

    @property
    def finished(self) -> bool:
        """No frame will come: the source has ended and every frame found ahead was processed."""
        return self.source.finished and (self.lookahead is None or self.lookahead.drained)

    def release_found(self) -> None:
        """One frame found ahead was processed: its slot is free for the finder."""
        if self.lookahead is not None:
            self.lookahead.release(1)

    def final_state(self, stopped_by: StopReason | None) -> tuple[StreamState, StopReason | None]:
        """How the stream ended once closed: a file or upload stopped before its end (frames still in its buffer or
        found ahead but not processed) was interrupted, by `stopped_by`. Its capture thread may still be unwinding,
        so this does not wait for it."""
        if self.source.state in (StreamState.FAILED, StreamState.TRUNCATED, StreamState.LOST):
            return self.source.state, None
        unprocessed = self.lookahead.unprocessed if self.lookahead is not None else 0
        if stopped_by is not None and (self.source.stopped_early or unprocessed):
            return StreamState.INTERRUPTED, stopped_by
        return StreamState.ENDED, None

    def status_line(self, settings: LoopSettings) -> str:
        """This stream's status line (stream/status_lines.py)."""
        spec = self.source.spec
        done, expected = self.frames_processed, self.source.expected_frames
        faces, scored = len(self.tracks), self.faces_scored_lately()
        return status_line(self.health(), spec.kind, spec.live, faces, done, expected, settings, scored)

    def scored_window(self, track_id: int) -> None:
        now = time.monotonic()
        self.fps_scored.tick(now)
        self.windows_scored += 1
        self._scored_at[track_id] = now
        if len(self._scored_at) > SCORED_FACES_KEPT:
            self.faces_scored_lately(now)

    def faces_scored_lately(self, now: float | None = None) -> int:
        """The faces with a window score over the scored-rate meter's last seconds: what that rate is shared by
        (faces in view now would overstate it right after one leaves)."""
        cutoff = (time.monotonic() if now is None else now) - self.fps_scored.window_s
        self._scored_at = {track: at for track, at in self._scored_at.items() if at >= cutoff}
        return len(self._scored_at)

    def health(self) -> StreamHealth:
        """Now: rates over the meters' last few seconds. A source that has ended (a file read to its end, a
        publisher gone) is still live until the loop has taken its last buffered frame and closed the stream (its
        final health then says how it ended): an ended state means no more scores will come and its name is free."""
        now = time.monotonic()
        health = self._health(self.fps_in.rate(now), self.fps_scored.rate(now))
        if health.state in (StreamState.STARTING, StreamState.LIVE, StreamState.RECONNECTING):
            return health
        return replace(health, state=StreamState.LIVE)

    def final_health(self) -> StreamHealth:
        """At its end: rates over the stream's whole span, from its first processed frame to its last (a rate
        taken "now" reads 0, or what its last few stamps suggest, once its frames have stopped coming)."""
        start, end = self.first_frame_at, self.last_frame_at
        return self._health(
            span_rate(self.frames_processed - 1, start, end), span_rate(self.windows_scored, start, end)
        )

    def note_interval(self, frame: Frame) -> None:
        """Update a live stream's frame interval (a moving average) from this frame and the last one processed."""
        if self.last_processed is None or frame.index <= self.last_processed[0]:
            return
        interval = (frame.t_capture - self.last_processed[1]) / (frame.index - self.last_processed[0])
        self.interval_s = interval if self.interval_s is None else self.interval_s + 0.2 * (interval - self.interval_s)

    def count_thinned(self, frame: Frame, min_track_fps: float, gate: BackgroundGate | None = None) -> None:
        """Of the live frames the source's buffer dropped since the last one processed, count those thinned (the
        rest stay dropped): see `stream.loop.overload.thinned_of`. The time `gate` says upload iterations took in
        between is left out of the span (frames left out for an upload's share are thinned, `yielded_of`)."""
        last, self.last_processed = self.last_processed, (frame.index, frame.t_capture)
        if last is None or frame.index - last[0] <= 1:
            return
        yielded_s = gate.background_s_since(self.previous_frame_at) if gate is not None else 0.0
        thinned = thinned_of(frame.index - last[0] - 1, frame.t_capture - last[1] - yielded_s, min_track_fps)
        self.frames_thinned += thinned
        self.frames_yielded += yielded_of(thinned, yielded_s, self.interval_s)

    def _health(self, fps_in: float, fps_scored: float) -> StreamHealth:
        overloaded = self.frames_thinned - round(self.frames_yielded)  # left out for an upload is not overload
        counts = (self.frames_processed, overloaded, self.crops_encoded, self.crops_skipped)
        return StreamHealth(
            stream_id=self.source.stream_id,
            state=self.source.state,
            fps_in=fps_in,
            fps_scored=fps_scored,
            frames_dropped=self.source.dropped - self.frames_thinned,
            reconnects=self.source.reconnects,
            last_error=self.source.last_error,
            frames_read=self.source.frames_read,
            frames_thinned=self.frames_thinned,
            crops_encoded=self.crops_encoded,
            crops_skipped=self.crops_skipped,
            frames_expected=self.source.expected_frames,
            overload_share=self.overload.share(time.monotonic(), *counts),
        )
