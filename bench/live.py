"""Real-time behaviour: a 640x480 30 fps file replayed as a live source (paced to its frame rate, looping), with
1, 2 and 4 faces: windows scored per face per second, frames dropped, capture-to-score latency p50/p95, and
the process's RSS over the run. The baseline in the same run is the input: 30 frames/s per face offered.

Run: `.venv/bin/python bench/live.py [--seconds 30] [--faces 1,2,4]`; `--seconds 600 --faces 1` is the
10-minute memory soak.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table
from bench.pipeline import make_video
from model.engine import build_engine
from model.weights import random_model
from stream.config import Settings, with_overrides
from stream.detector import Detector
from stream.sources import (
    DecodedFrame,
    SourceOptions,
    SourceSpec,
    decode_frames,
    open_container,
)

WARMUP_S = 5.0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def looping(spec: SourceSpec) -> Iterator[DecodedFrame]:
    """The file over and over, media time running on, so a short file makes a long live stream."""
    offset = 0.0
    for _ in itertools.count():
        last = 0.0
        for decoded in decode_frames(open_container(spec, SourceOptions()), spec):
            last = decoded.t_media or 0.0
            yield DecodedFrame(decoded.image_bgr, offset + last)
        offset += last + 1 / 30


def run_live(video: Path, faces: int, seconds: float, folder: Path, rtsp_url: str | None = None) -> list[object]:
    loaded = random_model()
    engine = build_engine(loaded, "auto", "auto", folder / "cache")
    overrides = {
        "model.window": 20,
        "pipeline.status_interval_s": 1e9,
        "sources.realtime": True,
        "clips.enabled": False,
        "store.db": str(folder / f"live{faces}.db"),
    }
    settings = with_overrides(Settings(), overrides, "bench")
    rss: list[tuple[float, float]] = []
    with Detector(settings, [rtsp_url or video.name], loaded=loaded, engine=engine) as detector:
        if rtsp_url:
            source = detector.open_source(rtsp_url, "live")
        else:
            spec = SourceSpec("file", str(video), live=False, display=video.name)
            source = detector.open_source(spec, "live", producer=lambda: looping(spec))
        started = time.monotonic()

        def sample() -> None:
            while time.monotonic() - started < seconds:
                rss.append((time.monotonic() - started, rss_mb()))
                time.sleep(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        detector.run(duration_s=seconds)
        elapsed = time.monotonic() - started
        summaries = detector.face_summaries()
        timings = {t.stage: t for t in detector.pipeline.stage_timings()}
        dropped, frames = source.dropped, source.frames_read
    per_face = sorted((s.frames_scored / elapsed for s in summaries if s.frames_scored), reverse=True)[:faces]
    after_warmup = [m for t, m in rss if t >= WARMUP_S] or [m for _, m in rss]
    growth = 100 * (after_warmup[-1] - after_warmup[0]) / after_warmup[0]
    latency = timings.get("latency")
    return [
        f"{faces} ({'rtsp' if rtsp_url else 'file'})",
        f"{frames / elapsed:.1f}",
        " ".join(f"{v:.1f}" for v in per_face),
        f"{dropped} ({100 * dropped / max(frames, 1):.0f}%)",
        f"{latency.p50_ms:.0f}" if latency else "-",
        f"{latency.p95_ms:.0f}" if latency else "-",
        f"{after_warmup[0]:.0f} -> {after_warmup[-1]:.0f} ({growth:+.1f}%)",
        " ".join(f"{s}:{timings[s].p50_ms:.1f}" for s in ("decode", "detect", "encode") if s in timings),
    ]


def run_over_rtsp(folder: Path, faces: int, seconds: float) -> list[object]:
    """The same scene served by a real RTSP server on loopback in a private network namespace."""
    from tests.netns import RtspServer, private_network

    long_video = make_video(folder / f"rtsp{faces}.mp4", faces, int(30 * (seconds + 10)))
    with private_network(), RtspServer(video=long_video, path="/cam") as server:
        return run_live(long_video, faces, seconds, folder, rtsp_url=server.url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--faces", default="1,2,4")
    parser.add_argument(
        "--rtsp", action="store_true", help="also serve each video from the tests' GStreamer RTSP server (needs root)"
    )
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder_path = Path(folder)
        for faces in (int(f) for f in args.faces.split(",")):
            video = make_video(folder_path / f"faces{faces}.mp4", faces, 150)
            rows.append(run_live(video, faces, args.seconds, folder_path))
            if args.rtsp:
                rows.append(run_over_rtsp(folder_path, faces, args.seconds))
    print(f"640x480 30 fps offered per stream, window 20, {args.seconds:.0f} s each, RSS from {WARMUP_S:.0f} s on")
    print("(decode p50 of a live source includes waiting for its next frame: ~33 ms at 30 fps)")
    print_table(
        ["faces", "fps in", "scored/s per face", "dropped", "latency p50 ms", "latency p95 ms", "RSS MB", "p50 ms"],
        rows,
    )


if __name__ == "__main__":
    main()
