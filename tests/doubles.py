"""Test doubles for the loop: scripted synthetic frames, a face detector that finds solid-coloured squares, an engine
whose p_fake follows a crop's colour (red FAKE, blue REAL) and a sink that records every event.

With them a pipeline test runs in milliseconds: no video decoding, no MediaPipe, no network, no ONNX export.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from model.engines import Engine
from model.network import FAKE_INDEX, FrameOutputs, WindowMode
from stream.capture.sources import Producer
from stream.records import DecodedFrame, Detection, Event

WIDTH, HEIGHT, SIDE = 160, 120, 40
FPS = 30.0
RED: tuple[int, int, int] = (0, 0, 255)  # BGR
BLUE: tuple[int, int, int] = (255, 0, 0)


@dataclass(frozen=True)
class Square:
    """One solid-coloured square "face": its BGR colour and top-left corner."""

    colour: tuple[int, int, int]
    x: int
    y: int
    side: int = SIDE

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (float(self.x), float(self.y), float(self.x + self.side), float(self.y + self.side))


Scene = Callable[[int], Sequence[Square]]  # frame index -> the squares in that frame


def render(squares: Sequence[Square]) -> np.ndarray:
    """A black WIDTHxHEIGHT BGR frame with the squares drawn on it."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for square in squares:
        image[square.y : square.y + square.side, square.x : square.x + square.side] = square.colour
    return image


def stub_producer(
    scene: Scene, frames: int | None = None, burst: int | None = None, interval_s: float = 0.0
) -> Producer:
    """A producer of `frames` frames (None: endless) drawn from `scene`, with t_media = index / FPS.

    Frames come as fast as the consumer takes them; after the first `burst` frames (None: never) each further one
    comes `interval_s` later. Every call starts again at frame 0 (as a reconnect would).
    """

    def produce() -> Iterator[DecodedFrame]:
        index = 0
        while frames is None or index < frames:
            if burst is not None and index >= burst and interval_s > 0:
                time.sleep(interval_s)
            yield DecodedFrame(render(scene(index)), index / FPS)
            index += 1

    return produce


class ScriptedFaces:
    """A face detector for synthetic frames: one detection per distinct non-black colour, its bounding box, left
    to right. Counts its calls (one per frame the loop processed, each at a monotonic time kept in `called_at`)
    and its closes."""

    def __init__(self) -> None:
        self.calls = 0
        self.called_at: list[float] = []
        self.closes = 0

    def detect(self, image_bgr: np.ndarray, timestamp_ms: int) -> list[Detection]:
        self.calls += 1
        self.called_at.append(time.monotonic())
        pixels = image_bgr.astype(np.int32)
        codes = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
        detections = []
        for code in np.unique(codes[codes != 0]):
            ys, xs = np.nonzero(codes == code)
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
            detections.append(Detection(box, 0.99))
        return sorted(detections, key=lambda d: d.box_xyxy)

    def close(self) -> None:
        self.closes += 1


class FaceFactory:
    """`detector_factory` for the loop: makes one ScriptedFaces per stream and keeps them for the test to inspect."""

    def __init__(self) -> None:
        self.made: list[ScriptedFaces] = []

    def __call__(self) -> ScriptedFaces:
        detector = ScriptedFaces()
        self.made.append(detector)
        return detector


class FakeEngine(Engine):
    """An `Engine` without a network: a crop's logits are [k·r, -k·r], r its redness (mean of the
    normalised R channel minus mean of B, BGR order), so red crops are FAKE (p_fake ≈ 1) and blue ones REAL."""

    name = "fake"
    device = torch.device("cpu")

    def __init__(self, gain: float = 5.0) -> None:
        self.gain = gain
        self.batches: list[int] = []  # crops per encode call

    def encode(self, batch: Tensor) -> FrameOutputs:
        self.batches.append(int(batch.shape[0]))
        channel_means = batch.float().mean(dim=(2, 3))  # [N, 3], BGR
        redness = channel_means[:, 2] - channel_means[:, 0]
        logits = torch.stack([self.gain * redness, -self.gain * redness], dim=1)
        features = channel_means.repeat(1, 2048 // 3 + 1)[:, :2048].contiguous()
        return FrameOutputs(features=features, logits=logits)

    def score(self, window: FrameOutputs, mode: WindowMode) -> Tensor:
        assert window.logits is not None
        logits = window.logits.mean(dim=-2) if mode == "mean" else window.logits[..., -1, :]
        return torch.softmax(logits.float(), dim=-1)[..., FAKE_INDEX]


class RecordingSink:
    """Keeps every event it is sent, in order, and counts its batches and closes."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.batches = 0
        self.closes = 0

    def send(self, events: Sequence[Event]) -> None:
        self.batches += 1
        self.events.extend(events)

    def close(self) -> None:
        self.closes += 1

    def of(self, kind: type) -> list:
        """The events of one type, in order (a copy: safe while the loop still sends)."""
        return [e for e in list(self.events) if isinstance(e, kind)]
