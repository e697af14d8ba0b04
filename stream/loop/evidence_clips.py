"""Evidence clips: when a face turns FAKE, an mp4 of its recent crops (pre-roll from its ring) and the next few
seconds of that face; total disk use bounded by deleting the oldest clips. Clips are created 0600 in a folder made
0700 (stream/store/private_files.py): they are faces."""

from __future__ import annotations

import time
from pathlib import Path

import av
import cv2
import numpy as np

from stream.config import ClipSettings
from stream.records import Alert, FinishedClip
from stream.store.private_files import create_private_file, make_private_folder


class OpenClip:
    """One face's clip being written: fed each new crop of the face until its post-roll is done."""

    def __init__(self, recorder: ClipRecorder, alert: Alert, path: Path, ends_at: float) -> None:
        settings = recorder.settings
        self.alert, self.path, self.ends_at, self.frames = alert, path, ends_at, 0
        self._recorder = recorder
        create_private_file(path)  # FFmpeg then opens it by name, keeping its mode
        self._container = av.open(str(path), "w")
        self._stream = self._container.add_stream("libx264", rate=round(settings.fps))
        self._stream.width = self._stream.height = settings.size
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"preset": "veryfast", "crf": "23"}
        self._finished: FinishedClip | None = None

    def write_pre_roll(self, crops: np.ndarray) -> None:
        for crop in crops:
            self._write(crop)

    def feed(self, crop_bgr: np.ndarray, now: float | None = None) -> FinishedClip | None:
        """Add the face's newest crop; returns the finished clip once the post-roll is complete."""
        if self._finished is not None:
            return None
        self._write(crop_bgr)
        now = time.monotonic() if now is None else now
        return self.finish() if now >= self.ends_at else None

    def finish(self) -> FinishedClip:
        """Close the file (early when the face left or its stream ended); safe to call twice."""
        if self._finished is None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._finished = FinishedClip(self.alert, self.path, self.frames)
            self._recorder.enforce_budget(keep=self.path)
        return self._finished

    @property
    def done(self) -> bool:
        return self._finished is not None

    def _write(self, crop_bgr: np.ndarray) -> None:
        size = self._recorder.settings.size
        image = cv2.resize(np.ascontiguousarray(crop_bgr), (size, size), interpolation=cv2.INTER_AREA)
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = self.frames
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1


class ClipRecorder:
    """Starts one clip per alert (the face holds it open) and keeps the clips folder within its disk budget."""

    def __init__(self, settings: ClipSettings) -> None:
        if settings.directory is None:
            raise ValueError("clip settings without a directory: place them with ClipSettings.beside_store(db)")
        self.settings = settings
        self.directory: Path = settings.directory

    def start(self, alert: Alert, pre_roll: np.ndarray, now: float | None = None) -> OpenClip:
        """Open a clip for the alert's face and write `pre_roll` (N x H x W x 3 uint8 BGR crops, oldest first)."""
        make_private_folder(self.directory)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(alert.t))
        millis = int(alert.t % 1 * 1000)
        safe_stream = "".join(c if c.isalnum() or c in "-_" else "_" for c in alert.stream_id)
        path = self.directory / f"{stamp}{millis:03d}-{safe_stream}-face{alert.track_id}.mp4"
        now = time.monotonic() if now is None else now
        clip = OpenClip(self, alert, path, ends_at=now + self.settings.post_roll_s)
        clip.write_pre_roll(pre_roll)
        return clip

    def enforce_budget(self, keep: Path) -> None:
        """Delete the oldest clips until the folder is within `max_total_mb` (never `keep`)."""
        clips = sorted(self.directory.glob("*.mp4"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in clips)
        budget = self.settings.max_total_mb * 1e6
        for old in clips:
            if total <= budget:
                break
            if old != keep:
                total -= old.stat().st_size
                old.unlink(missing_ok=True)
