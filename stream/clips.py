"""Evidence clips: when a face turns FAKE, an mp4 of its recent crops (pre-roll from its ring) and the next few
seconds of that face; total disk use bounded by deleting the oldest clips."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np


@dataclass(frozen=True)
class ClipSettings:
    directory: Path = Path("runs/clips")
    post_roll_s: float = 3.0  # seconds of the face recorded after it turned FAKE
    size: int = 112  # clip frames are size x size
    fps: float = 15.0  # nominal playback rate of the mp4 (crops arrive at whatever rate was scored)
    max_total_mb: float = 500.0  # oldest clips are deleted past this

    def __post_init__(self) -> None:
        if self.post_roll_s < 0 or self.size < 16 or self.size % 2 or self.fps <= 0 or self.max_total_mb <= 0:
            raise ValueError(
                "clip settings: post_roll_s >= 0, an even size >= 16, fps > 0 and max_total_mb > 0 are required"
            )


@dataclass(frozen=True)
class FinishedClip:
    alert_id: int
    path: Path
    frames: int


@dataclass
class _OpenClip:
    alert_id: int
    path: Path
    container: av.container.OutputContainer
    stream: av.video.stream.VideoStream
    ends_at: float
    frames: int = 0


class ClipRecorder:
    """Writes one clip per alert; the pipeline feeds it each new crop of a face that has a clip open."""

    def __init__(self, settings: ClipSettings) -> None:
        self.settings = settings
        self._open: dict[tuple[str, int], _OpenClip] = {}

    def recording(self, stream_id: str, track_id: int) -> bool:
        return (stream_id, track_id) in self._open

    def start(
        self, alert_id: int, stream_id: str, track_id: int, pre_roll: np.ndarray, now: float | None = None
    ) -> Path:
        """Open a clip for this face and write `pre_roll` (N x H x W x 3 uint8 BGR crops, oldest first)."""
        key = (stream_id, track_id)
        if key in self._open:
            self._close(key)
        self.settings.directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        safe_stream = "".join(c if c.isalnum() or c in "-_" else "_" for c in stream_id)
        path = self.settings.directory / f"{stamp}-{safe_stream}-face{track_id}-alert{alert_id}.mp4"
        container = av.open(str(path), "w")
        stream = container.add_stream("libx264", rate=round(self.settings.fps))
        stream.width = stream.height = self.settings.size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        now = time.monotonic() if now is None else now
        clip = _OpenClip(alert_id, path, container, stream, ends_at=now + self.settings.post_roll_s)
        self._open[key] = clip
        for crop in pre_roll:
            self._write(clip, crop)
        return path

    def feed(
        self, stream_id: str, track_id: int, crop_bgr: np.ndarray, now: float | None = None
    ) -> FinishedClip | None:
        """Add a face's newest crop to its open clip; returns the clip when its post-roll is complete."""
        key = (stream_id, track_id)
        clip = self._open.get(key)
        if clip is None:
            return None
        self._write(clip, crop_bgr)
        now = time.monotonic() if now is None else now
        return self._close(key) if now >= clip.ends_at else None

    def finish(self, stream_id: str, track_id: int) -> FinishedClip | None:
        """Close a face's clip early (the face left or its stream ended)."""
        return self._close((stream_id, track_id)) if (stream_id, track_id) in self._open else None

    def finish_all(self) -> list[FinishedClip]:
        return [self._close(key) for key in list(self._open)]

    def _write(self, clip: _OpenClip, crop_bgr: np.ndarray) -> None:
        size = self.settings.size
        image = cv2.resize(np.ascontiguousarray(crop_bgr), (size, size), interpolation=cv2.INTER_AREA)
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = clip.frames
        for packet in clip.stream.encode(frame):
            clip.container.mux(packet)
        clip.frames += 1

    def _close(self, key: tuple[str, int]) -> FinishedClip:
        clip = self._open.pop(key)
        for packet in clip.stream.encode():
            clip.container.mux(packet)
        clip.container.close()
        self._enforce_budget(keep=clip.path)
        return FinishedClip(clip.alert_id, clip.path, clip.frames)

    def _enforce_budget(self, keep: Path) -> None:
        clips = sorted(self.settings.directory.glob("*.mp4"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in clips)
        budget = self.settings.max_total_mb * 1e6
        for old in clips:
            if total <= budget:
                break
            if old != keep:
                total -= old.stat().st_size
                old.unlink(missing_ok=True)
