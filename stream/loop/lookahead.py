"""Face finding ahead of the encoder for a file or an upload: one thread owns the stream's cropper, takes every
frame from the source's buffer in order, finds and cuts its faces (and resizes the crops for the model), and queues
the frame with its crops, the track ids given up on before it and its tracks; the loop takes many found frames at
once and encodes their crops in one batch while the thread finds the next ones.

Bounded: the thread holds a slot for every frame it has taken until the loop has processed it, and there are
`depth` slots (`pipeline.lookahead_frames`). While a live stream runs the depth is 0: the thread parks once the
frames it found are taken, and the loop then finds the file's frames itself, frame by frame, as without look-ahead
(the cropper is the loop's while the thread is parked: it leaves only when the loop raises the depth or stops it).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from stream.capture.sources import Source
from stream.faces.cropper import FaceCrop, FaceCropper
from stream.records import Frame, Track

TAKE_WAIT_S = 0.05  # the thread wakes at least this often to notice a stop


@dataclass(frozen=True)
class FoundFrame:
    """One frame as the finder left it: its crops, the tracks given up on before it, and its tracks (for the
    annotation and the status line of this frame, whatever the finder has moved on to since)."""

    frame: Frame
    crops: tuple[FaceCrop, ...]
    evicted: tuple[int, ...]
    tracks: tuple[Track, ...]
    taken_at: float  # monotonic: when the finder took it from the buffer (the stream's input rate counts this)
    resized: tuple[Tensor, ...] = ()  # its crops resized for the model, in order (none: the encoder resizes them)

    @property
    def images(self) -> list[np.ndarray | Tensor]:
        """What the encoder takes for its crops: resized ones where the finder resized them."""
        return list(self.resized) if self.resized else [c.image_bgr for c in self.crops]


class LookAhead:
    """The finder thread of one stream and its bounded queue of found frames."""

    def __init__(
        self,
        source: Source,
        cropper: FaceCropper,
        depth: int,
        resize: Callable[[np.ndarray], Tensor] | None = None,
    ) -> None:
        """`resize`: what the encoder would do to each crop first, done here instead (CropEncoder.resized)."""
        if depth < 0:
            raise ValueError(f"look-ahead depth must be at least 0 frames, got {depth}")
        self._source = source
        self._cropper = cropper
        self._resize = resize
        self._found: deque[FoundFrame] = deque()
        self._held = 0  # frames taken from the buffer and not yet released by the loop
        self._depth = depth
        self._parked = False  # depth 0 and waiting: the cropper is the loop's until the depth is raised
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._done = False  # the thread has ended: the source is finished, it was stopped, or finding failed
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"faces-{source.stream_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def set_depth(self, depth: int) -> None:
        with self._changed:
            self._depth = max(0, depth)
            self._changed.notify_all()

    def take(self, max_crops: int, max_frames: int) -> list[FoundFrame]:
        """The found frames waiting, oldest first: at least one (if any), then more while their crops fit in
        `max_crops` and the frames in `max_frames`. Raises what made finding fail once every frame before it
        was taken."""
        taken: list[FoundFrame] = []
        crops = 0
        with self._changed:
            while self._found and len(taken) < max_frames:
                more = len(self._found[0].crops)
                if taken and crops + more > max_crops:
                    break
                taken.append(self._found.popleft())
                crops += more
            if not taken and self._error is not None:
                error, self._error = self._error, None
                raise error
        return taken

    @property
    def idle(self) -> bool:
        """Parked with nothing found waiting: the loop may use the cropper itself."""
        with self._changed:
            return self._parked and not self._found

    def release(self, frames: int) -> None:
        """The loop has processed this many found frames: their slots are free."""
        with self._changed:
            self._held -= frames
            self._changed.notify_all()

    @property
    def unprocessed(self) -> int:
        """Frames taken from the source's buffer and not yet processed by the loop (being found, or found)."""
        with self._changed:
            return self._held

    @property
    def drained(self) -> bool:
        """The thread has ended (or is parked) and every frame it found was taken (an error still to raise is not
        drained)."""
        with self._changed:
            return (self._done or self._parked) and not self._found and self._error is None

    def stop(self, timeout: float) -> bool:
        """Stop the thread and wait for it; True once it has ended (the cropper is then the caller's again)."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with self._changed:
                    while not self._stop.is_set() and self._held >= self._depth:
                        self._parked = self._depth == 0
                        self._changed.wait(TAKE_WAIT_S)
                    self._parked = False
                if self._stop.is_set():
                    return
                frame = self._source.buffer.take(TAKE_WAIT_S)
                taken_at = time.monotonic()
                if frame is None:
                    if self._source.finished:
                        return
                    continue
                with self._changed:
                    self._held += 1
                crops = self._cropper.crops(frame)
                found = FoundFrame(
                    frame,
                    tuple(crops),
                    tuple(self._cropper.take_evicted()),
                    tuple(self._cropper.last_tracks),
                    taken_at,
                    tuple(self._resize(c.image_bgr) for c in crops) if self._resize is not None else (),
                )
                with self._changed:
                    self._found.append(found)
                del frame, crops, found  # held only while it has a slot
        except Exception as error:  # handed to the loop, which raises it as its own cropper would have
            with self._changed:
                self._error = error
        finally:
            with self._changed:
                self._done = True
                self._changed.notify_all()
