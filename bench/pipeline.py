"""End-to-end replay speed: a 640x480 30 fps file with 1, 2 and 4 faces, as fast as possible.

For each face count: frames/s end to end, face crops/s and per-stage p50/p95 (decode, detect, track,
preprocess, encode, score, store), for our pipeline (each crop encoded once, windows scored from the ring)
and, in the same run, the original app's way (every window recomputes its T crops: emulated by making the
same engine encode each batch T times over).
Run: `.venv/bin/python bench/pipeline.py [--frames 90] [--window 20]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table
from model.engines import Engine, build_engine
from model.network import FrameOutputs, WindowMode
from model.weights import random_model
from stream.capture.demo import background, head_patch, paste
from stream.config import Settings, with_overrides
from stream.detector import Detector, cpu_calibration

STAGES = ("decode", "detect", "track", "preprocess", "encode", "score", "store", "latency")


class RecomputeEngine(Engine):
    """The original's cost model: every window step pushes all T crops of the window through the network."""

    def __init__(self, inner: Engine, window: int) -> None:
        self.inner, self.window = inner, window
        self.name, self.device = f"{inner.name} x{window}", inner.device

    def encode(self, batch: torch.Tensor) -> FrameOutputs:
        for _ in range(self.window - 1):
            self.inner.encode(batch)
        return self.inner.encode(batch)

    def score(self, window: FrameOutputs, mode: WindowMode) -> torch.Tensor:
        return self.inner.score(window, mode)


def make_video(path: Path, faces: int, frames: int) -> Path:
    """640x480 at 30 fps with `faces` heads moving back and forth: up to 4 in quarters, up to 8 in a 4x2 grid."""
    if faces <= 4:
        heads = [head_patch(flip=bool(i % 2), scale=0.7) for i in range(faces)]
        slots = [(40, 30), (360, 30), (40, 250), (360, 250)][:faces]
    else:
        heads = [head_patch(flip=bool(i % 2), scale=0.45) for i in range(faces)]
        slots = [(10 + 160 * (i % 4), 40 + 220 * (i // 4)) for i in range(faces)]
    base = background(640, 480)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        for i in range(frames):
            canvas = base.copy()
            for head, (x, y) in zip(heads, slots, strict=True):
                paste(canvas, head, x + abs(i % 60 - 30), y)  # back and forth, 1 px a frame
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def replay(video: Path, engine: Engine, loaded, window: int, db: Path) -> dict[str, float]:
    overrides = {"model.window": window, "pipeline.status_interval_s": 1e9, "clips.enabled": False, "store.db": str(db)}
    settings = with_overrides(Settings(), overrides, "bench")
    with Detector(settings, [video.name], loaded=loaded, engine=engine) as detector:
        source = detector.open_source(str(video), "bench")
        started = time.perf_counter()
        detector.run()
        elapsed = time.perf_counter() - started
        crops = sum(s.crops or 0 for s in detector.face_summaries())
        stats = {"fps": source.frames_read / elapsed, "crops/s": crops / elapsed}
        for timing in detector.pipeline.stage_timings():
            stats[f"{timing.stage} p50"], stats[f"{timing.stage} p95"] = timing.p50_ms, timing.p95_ms
        return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=90, help="frames per replay of our pipeline")
    parser.add_argument("--baseline-frames", type=int, default=30, help="frames per replay the original's way")
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--faces", default="1,2,4")
    args = parser.parse_args()

    loaded = random_model()
    with tempfile.TemporaryDirectory() as folder:
        folder_path = Path(folder)
        engine = build_engine(loaded, "auto", "auto", folder_path / "cache", cpu_calibration(Settings()))
        print(f"engine {engine.name}, window {args.window}, 640x480 30 fps, libx264")
        rows = []
        for faces in (int(f) for f in args.faces.split(",")):
            ours_video = make_video(folder_path / f"ours{faces}.mp4", faces, args.frames)
            base_video = make_video(folder_path / f"base{faces}.mp4", faces, args.baseline_frames)
            for label, video, runner in (
                ("cached (ours)", ours_video, engine),
                ("recompute T (original)", base_video, RecomputeEngine(engine, args.window)),
            ):
                stats = replay(video, runner, loaded, args.window, folder_path / f"{label[:4]}{faces}.db")
                stages = " ".join(
                    f"{s}:{stats.get(f'{s} p50', float('nan')):.1f}/{stats.get(f'{s} p95', float('nan')):.1f}"
                    for s in STAGES
                )
                rows.append([faces, label, f"{stats['fps']:.1f}", f"{stats['crops/s']:.1f}", stages])
    print_table(["faces", "way", "frames/s", "crops/s", "stage p50/p95 ms"], rows)
    print("(latency = capture to score; under as-fast-as-possible replay it includes time queued in the file buffer)")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
