"""Real-time behaviour under load: 640x480 30 fps files replayed as live sources (paced to their frame rate,
looping), with 1, 2, 4 and 8 faces on one camera and 4 cameras x 2 faces, each setup once with `auto`'s engine and
once with fp32 ONNX Runtime, in the same run.

Per setup: the frames each camera delivered, thinned (overload sharing, evenly) and dropped (lost otherwise); window
scores per face per second (slowest and fastest face); face ids per person; crops skipped; capture-to-score latency
p50/p95; RSS. The targets are same-run ratios: every face keeps one id; the slowest face's scoring rate >= 0.8 x
(the engine's own crops/s at that batch, measured here, / faces), capped at the frame rate; slowest face >= 0.8 x
fastest.

Run: `.venv/bin/python bench/live.py [--seconds 20] [--faces 1,2,4,8] [--cameras 4x2] [--engines auto,onnxruntime]`;
`--seconds 600 --faces 1 --cameras ""` is the 10-minute memory soak; `--rtsp` also serves each 1-camera video
from the tests' GStreamer RTSP server (needs root).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# As the detector runs (run_stream.py): OpenMP threads sleep when idle instead of spinning on shared cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table
from bench.pipeline import make_video
from model.cpu import cpu_description
from model.engines import Engine, build_engine
from model.engines.timing import measure
from model.weights import LoadedModel, random_model
from stream.capture.decoding import decode_frames, open_container
from stream.capture.references import SourceSpec
from stream.capture.sources import Source
from stream.config import Settings, SourceOptions, with_overrides
from stream.detector import Detector, cpu_calibration
from stream.records import DecodedFrame

WARMUP_S = 5.0
FPS = 30.0


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
        offset += last + 1 / FPS


@dataclass(frozen=True)
class Setup:
    cameras: int
    faces: int  # per camera

    @property
    def label(self) -> str:
        return (
            f"{self.faces} face{'s' if self.faces > 1 else ''}" if self.cameras == 1 else f"{self.cameras}x{self.faces}"
        )


def settings_for(folder: Path, name: str) -> Settings:
    overrides = {
        "model.window": 20,
        "pipeline.status_interval_s": 1e9,
        "sources.realtime": True,
        "clips.enabled": False,
        "store.db": str(folder / f"{name}.db"),
    }
    return with_overrides(Settings(), overrides, "bench")


def run_live(
    setup: Setup,
    videos: list[Path],
    engine: Engine,
    engine_rate: float,
    loaded: LoadedModel,
    seconds: float,
    folder: Path,
) -> list[object]:
    settings = settings_for(folder, f"{engine.name}-{setup.cameras}x{setup.faces}")
    rss: list[tuple[float, float]] = []
    with Detector(settings, [v.name for v in videos], loaded=loaded, engine=engine) as detector:
        sources: list[Source] = []
        for index, video in enumerate(videos):
            spec = SourceSpec("file", str(video), live=False, display=video.name)
            sources.append(detector.open_source(spec, f"cam{index}", producer=lambda s=spec: looping(s)))
        started = time.monotonic()

        def sample() -> None:
            while time.monotonic() - started < seconds:
                rss.append((time.monotonic() - started, rss_mb()))
                time.sleep(1.0)

        threading.Thread(target=sample, daemon=True).start()
        detector.run(duration_s=seconds)
        elapsed = time.monotonic() - started
        summaries = detector.face_summaries()
        health = {h.stream_id: h for h in detector.health()}
        timings = {t.stage: t for t in detector.pipeline.stage_timings()}
    people = setup.cameras * setup.faces
    # A person's rate is their best id's (per camera, the `faces` ids scored most); an id lost and re-made shows
    # in "ids/people", and a person never scored counts as 0.
    rates: list[float] = []
    for camera in range(setup.cameras):
        mine = sorted((s.frames_scored for s in summaries if s.stream_id == f"cam{camera}"), reverse=True)
        rates += [count / elapsed for count in (mine + [0] * setup.faces)[: setup.faces]]
    slowest, fastest = min(rates), max(rates)
    target = 0.8 * min(FPS, engine_rate / people)
    frames = sum(s.frames_read for s in sources)
    thinned = sum(h.frames_thinned for h in health.values())
    dropped = sum(h.frames_dropped for h in health.values())  # lost frames: the buffer's drops less those thinned
    encoded = sum(s.crops or 0 for s in summaries)
    skipped = sum(s.crops_skipped or 0 for s in summaries)
    after_warmup = [m for t, m in rss if t >= WARMUP_S] or [m for _, m in rss]
    latency = timings.get("latency")
    return [
        setup.label,
        engine.name,
        f"{frames / elapsed / setup.cameras:.1f}",
        f"{thinned} / {dropped}",
        f"{slowest:.1f} / {fastest:.1f}",
        f"{engine_rate / people:.1f}",
        f"{slowest / target:.2f}" if target else "-",
        f"{slowest / fastest:.2f}" if fastest else "-",
        f"{len(summaries)} / {people}",
        f"{100 * skipped / max(encoded + skipped, 1):.0f}%",
        f"{latency.p50_ms:.0f} / {latency.p95_ms:.0f}" if latency else "-",
        f"{after_warmup[0]:.0f} -> {after_warmup[-1]:.0f}",
    ]


def run_over_rtsp(
    setup: Setup, engine: Engine, engine_rate: float, loaded: LoadedModel, seconds: float, folder: Path
) -> list[object]:
    """One camera's scene served by a real RTSP server on loopback in a private network namespace."""
    from tests.netns import RtspServer, private_network

    long_video = make_video(folder / f"rtsp{setup.faces}.mp4", setup.faces, int(FPS * (seconds + 10)))
    settings = settings_for(folder, f"rtsp-{engine.name}-{setup.faces}")
    with (
        private_network(),
        RtspServer(video=long_video, path="/cam") as server,
        Detector(settings, [server.url], loaded=loaded, engine=engine) as detector,
    ):
        source = detector.open_source(server.url, "rtsp")
        started = time.monotonic()
        detector.run(duration_s=seconds)
        elapsed = time.monotonic() - started
        summaries = detector.face_summaries()
    rates = sorted((s.frames_scored / elapsed for s in summaries if s.frames_scored), reverse=True)
    return [
        f"{setup.faces} (rtsp)",
        engine.name,
        f"{source.frames_read / elapsed:.1f}",
        f"- / {source.dropped}",
        f"{rates[-1]:.1f} / {rates[0]:.1f}" if rates else "-",
        f"{engine_rate / setup.faces:.1f}",
        "-",
        f"{rates[-1] / rates[0]:.2f}" if rates else "-",
        f"{len(summaries)} / {setup.faces}",
        "-",
        "-",
        "-",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--faces", default="1,2,4,8", help="faces on one camera, one setup each")
    parser.add_argument("--cameras", default="4x2", help="CAMERASxFACES setups, comma-separated ('' for none)")
    parser.add_argument("--engines", default="auto,onnxruntime", help="cpu engines to compare, in the same run")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: then one row per setup (the CUDA engine)")
    parser.add_argument("--rtsp", action="store_true", help="also serve each 1-camera video over RTSP (needs root)")
    args = parser.parse_args()
    setups = [Setup(1, int(f)) for f in args.faces.split(",") if f]
    setups += [Setup(*map(int, c.split("x"))) for c in args.cameras.split(",") if c]
    loaded = random_model()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder_path = Path(folder)
        videos = {
            faces: make_video(folder_path / f"faces{faces}.mp4", faces, 150) for faces in {s.faces for s in setups}
        }
        engines = []
        for name in args.engines.split(",") if args.device == "cpu" else ["onnxruntime"]:
            settings = with_overrides(Settings(), {"model.cpu_engine": name}, "bench")
            engines.append(build_engine(loaded, args.device, name, None, cpu_calibration(settings)))
        for setup in setups:
            batch = min(setup.cameras * setup.faces, Settings().pipeline.max_batch)
            # Each engine's own crops/s at this batch, measured here: what a fair share per face is judged against.
            rates = measure({e.name: e for e in engines}, loaded.preprocessing.input_size, (batch,))
            for engine in engines:
                videos_for = [videos[setup.faces]] * setup.cameras
                rows.append(run_live(setup, videos_for, engine, rates[engine.name], loaded, args.seconds, folder_path))
                if args.rtsp and setup.cameras == 1:
                    rows.append(run_over_rtsp(setup, engine, rates[engine.name], loaded, args.seconds, folder_path))
    print(f"cpu: {cpu_description()}")
    for engine in engines:
        print(f"{engine.name}: {(engine.choice and engine.choice.line) or 'named'}")
    print(
        f"640x480 {FPS:.0f} fps offered per camera, window 20, {args.seconds:.0f} s each; rates per face are window "
        "scores/s; 'fair share' is the engine's crops/s at that batch (measured in this run) / faces; 'vs target': "
        "slowest face / (0.8 x min(30, fair share)); RSS from 5 s on"
    )
    print_table(
        [
            "setup",
            "engine",
            "fps/cam",
            "thinned/dropped",
            "slowest/fastest face",
            "fair share",
            "vs target",
            "slow/fast",
            "ids/people",
            "skipped",
            "latency p50/p95 ms",
            "RSS MB",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
