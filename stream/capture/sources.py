"""A source: one capture thread per stream turning a reference (`demo`, a webcam, `rtsp://…`, a file) into `Frame`s.

Live sources drop the oldest frame when the pipeline is behind and reconnect with a growing, capped delay;
files wait for the pipeline (or are paced to their own frame rate with `realtime`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from stream.capture.decoding import decode_frames, expected_frame_count, open_container
from stream.capture.frame_buffer import FrameBuffer
from stream.capture.references import SourceEnded, SourceError, SourceLost, SourceSpec, TruncatedFile
from stream.config import SourceOptions
from stream.records import DecodedFrame, Frame, StreamState
from stream.timing import StageTimer

Producer = Callable[[], Iterator[DecodedFrame]]
SOURCE_ENDINGS = (StreamState.ENDED, StreamState.TRUNCATED, StreamState.FAILED, StreamState.LOST)
TRUNCATION_TOLERANCE = 0.98  # containers' frame counts can be estimates; only a clear shortfall is a truncation


class Source:
    """One capture thread: pulls from a producer into a FrameBuffer, paces files in realtime, reconnects live.

    `open()` makes the first connection on the caller's thread, so a bad reference fails at once with a
    SourceError; `start()` then runs the capture thread. A test may inject any `producer`.
    """

    def __init__(
        self,
        stream_id: str,
        spec: SourceSpec,
        options: SourceOptions | None = None,
        producer: Producer | None = None,
        timer: StageTimer | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.timer = timer
        self.spec = spec
        self.options = options or SourceOptions()
        # Only files named on the command line are paced with `realtime`; an upload is analysed as fast as it can be.
        self._realtime = self.options.realtime and spec.kind == "file"
        self.live = spec.live or self._realtime
        self.buffer = FrameBuffer(self.options.live_buffer if self.live else self.options.file_buffer, self.live)
        self.state = StreamState.STARTING
        self.last_error: str | None = None
        self.reconnects = 0
        self.truncated = False
        self.lost = False  # ended for good with a reason (SourceEnded), not by being stopped
        self.read_to_end = False  # a file whose every frame was read (not stopped first)
        self.frames_read = 0
        self.expected_frames: int | None = None
        self.nominal_fps: float | None = None
        self._producer = producer or self._open_with_pyav
        self._pending: Iterator[DecodedFrame] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture-{stream_id}", daemon=True)

    def _open_with_pyav(self) -> Iterator[DecodedFrame]:
        container = open_container(self.spec, self.options)
        stream = container.streams.video[0]
        self.nominal_fps = float(stream.average_rate) if stream.average_rate else None
        if self.spec.kind in ("file", "upload"):
            self.expected_frames = expected_frame_count(container)
        return decode_frames(container, self.spec)

    def open(self) -> None:
        """First connection, on the caller's thread: SourceError when the source cannot be used at all."""
        try:
            self._pending = self._producer()
        except SourceError as error:
            self.state, self.last_error = StreamState.FAILED, str(error)
            self.buffer.close()
            raise

    def start(self) -> None:
        if self._pending is None and self.state == StreamState.STARTING:
            self.open()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """`stop()` was called (the capture thread may still be unwinding)."""
        return self._stop.is_set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def dropped(self) -> int:
        return self.buffer.dropped

    @property
    def finished(self) -> bool:
        """The source will deliver no more frames and all it delivered has been taken."""
        return self.state in SOURCE_ENDINGS and self.buffer.exhausted

    @property
    def stopped_early(self) -> bool:
        """A file stopped before every frame it has was processed (read and taken from the buffer); settled as
        soon as `stop()` was called, whether or not the capture thread has unwound yet."""
        return not self.spec.live and not (self.read_to_end and len(self.buffer) == 0)

    def _connect(self) -> Iterator[DecodedFrame]:
        if self._pending is not None:
            frames, self._pending = self._pending, None
            return frames
        return self._producer()

    def _timed(self, frames: Iterator[DecodedFrame]) -> Iterator[DecodedFrame]:
        while True:
            began = time.perf_counter()
            decoded = next(frames, None)
            if decoded is None:
                return
            if self.timer:
                self.timer.record("decode", time.perf_counter() - began)
            yield decoded

    def _pump(self, frames: Iterator[DecodedFrame]) -> None:
        started, first_media = time.monotonic(), None
        for decoded in self._timed(frames):
            if self._stop.is_set():
                return
            self.state = StreamState.LIVE
            if self._realtime and decoded.t_media is not None:
                first_media = decoded.t_media if first_media is None else first_media
                delay = started + (decoded.t_media - first_media) - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
            if decoded.dropped_before:
                self.buffer.count_dropped(decoded.dropped_before)
            frame = Frame(self.stream_id, self.frames_read, time.time(), decoded.t_media, decoded.image_bgr)
            self.frames_read += 1
            self.buffer.put(frame, self._stop)

    def _run(self) -> None:
        delay = self.options.reconnect_initial_s
        try:
            while not self._stop.is_set():
                delivered = self.frames_read
                try:
                    self._pump(self._connect())
                    if self._stop.is_set() or not self.spec.live:
                        self.read_to_end = not self._stop.is_set()
                        self._check_complete()
                        break
                    raise SourceLost(f"{self.spec.display} ended without being stopped")
                except SourceEnded as error:
                    self.last_error = str(error) or self.last_error
                    self.lost = bool(str(error)) and not self._stop.is_set()
                    break
                except (SourceError, SourceLost) as error:
                    self.last_error = str(error)
                except TruncatedFile as error:
                    self.truncated = True
                    self.last_error = self._truncation_message(str(error))
                    break
                if self.frames_read > delivered:  # this connection worked: the next retry starts small again
                    delay = self.options.reconnect_initial_s
                self.state = StreamState.RECONNECTING
                self.reconnects += 1
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, self.options.reconnect_max_s)
        finally:
            if self.lost:
                self.state = StreamState.LOST
            elif self.state != StreamState.FAILED:
                self.state = StreamState.TRUNCATED if self.truncated else StreamState.ENDED
            self.buffer.close()

    def _check_complete(self) -> None:
        if self._stop.is_set() or not self.expected_frames:
            return
        if self.frames_read < self.expected_frames * TRUNCATION_TOLERANCE:
            self.truncated = True
            self.last_error = self._truncation_message("the file ends early")

    def _truncation_message(self, reason: str) -> str:
        of = f" of {self.expected_frames}" if self.expected_frames else ""
        return f"{self.spec.display} is truncated: decoding stopped after {self.frames_read}{of} frames ({reason})"
