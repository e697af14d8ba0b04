"""End-to-end replay speed: a 30 fps file (640x480, or 1280x720 with `--size`) with 1, 2 and 4 faces, as fast
as possible.

For each face count: frames/s end to end, face crops/s and per-stage p50/p95 (decode, detect, track,
preprocess, encode, score, store), in the same run and alternating round by round (so a machine getting busier
cannot favour one way): with look-ahead (`pipeline.lookahead_frames`: a file's faces found on their own thread
while the encoder works, the crops of many frames encoded in one batch) and without it (`lookahead_frames: 0`,
frame by frame); the medians of `--rounds` rounds, and their ratio. Then a reported ceiling, each part measured
alone: 1 / (t_find + faces x t_crop at max_batch) frames/s. Optionally (`--baseline-frames N`) the original app's
way (every window recomputes its T crops: emulated by making the same engine encode each batch T times over).
Run: `.venv/bin/python bench/pipeline.py [--frames 600] [--size 1280x720] [--faces 1,2,4] [--rounds 3]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import median_seconds, print_table
from model.engines import Engine, build_engine
from model.network import FrameOutputs, WindowMode
from model.weights import random_model
from stream.capture.demo import background, head_patch, paste
from stream.config import Settings, with_overrides
from stream.detector import Detector, cpu_calibration
from stream.faces.cropper import build_cropper
from stream.loop.crop_encoder import CropEncoder
from stream.records import Frame
from stream.timing import StageTimer

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


def make_video(path: Path, faces: int, frames: int, width: int = 640, height: int = 480) -> Path:
    """30 fps with `faces` heads moving back and forth: up to 4 in quarters, up to 8 in a 4x2 grid (laid out for
    640x480 and scaled with the frame)."""
    zoom = min(width / 640, height / 480)
    if faces <= 4:
        heads = [head_patch(flip=bool(i % 2), scale=0.7 * zoom) for i in range(faces)]
        slots = [(40, 30), (360, 30), (40, 250), (360, 250)][:faces]
    else:
        heads = [head_patch(flip=bool(i % 2), scale=0.45 * zoom) for i in range(faces)]
        slots = [(10 + 160 * (i % 4), 40 + 220 * (i // 4)) for i in range(faces)]
    slots = [(int(x * width / 640), int(y * height / 480)) for x, y in slots]
    base = background(width, height)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            canvas = base.copy()
            for head, (x, y) in zip(heads, slots, strict=True):
                paste(canvas, head, x + abs(i % 60 - 30), y)  # back and forth, 1 px a frame
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def replay(video: Path, engine: Engine, loaded, window: int, db: Path, lookahead: int | None) -> dict[str, float]:
    overrides = {"model.window": window, "pipeline.status_interval_s": 1e9, "clips.enabled": False, "store.db": str(db)}
    if lookahead is not None:
        overrides["pipeline.lookahead_frames"] = lookahead
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


def ceiling(video: Path, engine: Engine, loaded, faces: int) -> tuple[float, float, float]:
    """(t_find, t_crop at max_batch, 1 / (t_find + faces x t_crop)): face finding and cutting on the video's frames
    alone, then the encoder alone on full batches of those crops."""
    settings = Settings()
    with av.open(str(video)) as container:
        images = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    frames = [Frame("ceiling", i, time.time(), i / 30, image) for i, image in enumerate(images)]
    cropper = build_cropper("ceiling", settings)
    crops = []
    for frame in frames[:10]:  # warm up
        cropper.crops(frame)
    began = time.perf_counter()
    for frame in frames[10:]:
        crops.extend(c.image_bgr for c in cropper.crops(frame))
    t_find = (time.perf_counter() - began) / max(1, len(frames) - 10)
    cropper.close()
    batch = settings.pipeline.max_batch
    encoder = CropEncoder(engine, loaded.preprocessing, batch, StageTimer())
    chunk = (crops * batch)[:batch] if crops else []
    t_crop = median_seconds(lambda: encoder.encode(chunk), repeats=15) / batch if chunk else float("nan")
    return t_find, t_crop, 1.0 / (t_find + faces * t_crop)


def stage_text(stats: dict[str, float]) -> str:
    return " ".join(
        f"{s}:{stats.get(f'{s} p50', float('nan')):.1f}/{stats.get(f'{s} p95', float('nan')):.1f}" for s in STAGES
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=600, help="frames per replay")
    parser.add_argument("--baseline-frames", type=int, default=0, help="frames per replay the original's way (0: none)")
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--faces", default="1,2,4")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT of the made video")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each way (the median is shown)")
    parser.add_argument("--cpu-engine", default="auto", help="as --cpu-engine (auto: the cached choice)")
    parser.add_argument("--lookahead", type=int, default=Settings().pipeline.lookahead_frames, help="frames ahead")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    loaded = random_model()
    with tempfile.TemporaryDirectory() as folder:
        folder_path = Path(folder)
        # The detector's own engine cache: `auto`'s cached choice for this machine, as a run would use it.
        engine = build_engine(loaded, "auto", args.cpu_engine, None, cpu_calibration(Settings()))
        print(f"engine {engine.name}, window {args.window}, {width}x{height} 30 fps, libx264, {args.frames} frames")
        rows = []
        for faces in (int(f) for f in args.faces.split(",")):
            video = make_video(folder_path / f"ours{faces}.mp4", faces, args.frames, width, height)
            ways = {f"look-ahead {args.lookahead}": args.lookahead, "frame by frame (0)": 0}
            if args.lookahead == 0:  # frame by frame alone (to alternate with another checkout's bench)
                ways = {"frame by frame (0)": 0}
            runs: dict[str, list[dict[str, float]]] = {label: [] for label in ways}
            for round_ in range(args.rounds):
                order = list(ways.items()) if round_ % 2 == 0 else list(reversed(ways.items()))
                for label, lookahead in order:
                    db = folder_path / f"r{faces}-{round_}-{lookahead}.db"
                    runs[label].append(replay(video, engine, loaded, args.window, db, lookahead))
            medians = {label: statistics.median(r["fps"] for r in rs) for label, rs in runs.items()}
            off = medians["frame by frame (0)"]
            on = medians.get(f"look-ahead {args.lookahead}", off)
            for label, rs in runs.items():
                middle = sorted(rs, key=lambda r: r["fps"])[len(rs) // 2]
                all_fps = "/".join(f"{r['fps']:.1f}" for r in rs)
                ratio = f"{on / off:.2f}x" if label.startswith("look") else "1.00x"
                rows.append(
                    [
                        faces,
                        label,
                        f"{medians[label]:.1f} ({all_fps})",
                        ratio,
                        f"{middle['crops/s']:.1f}",
                        stage_text(middle),
                    ]
                )
            t_find, t_crop, top = ceiling(video, engine, loaded, faces)
            rows.append(
                [
                    faces,
                    f"ceiling: find {t_find * 1e3:.1f} ms + {faces} x crop {t_crop * 1e3:.1f} ms",
                    f"{top:.1f}",
                    f"{top / off:.2f}x",
                    "",
                    "(each measured alone, not gated)",
                ]
            )
            if args.baseline_frames:
                base_video = make_video(folder_path / f"base{faces}.mp4", faces, args.baseline_frames, width, height)
                runner = RecomputeEngine(engine, args.window)
                stats = replay(base_video, runner, loaded, args.window, folder_path / f"base{faces}.db", 0)
                rows.append(
                    [
                        faces,
                        "recompute T (original)",
                        f"{stats['fps']:.1f}",
                        f"{stats['fps'] / off:.2f}x",
                        f"{stats['crops/s']:.1f}",
                        stage_text(stats),
                    ]
                )
    print_table(["faces", "way", "frames/s median (rounds)", "vs frame by frame", "crops/s", "stage p50/p95 ms"], rows)
    print("(latency = capture to score; under as-fast-as-possible replay it includes time queued in the buffers)")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
