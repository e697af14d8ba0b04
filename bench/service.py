"""The detector as a service (issue 12): WHIP connect time, capture-to-score latency of a published stream beside
the same video as a paced file, and upload-to-report time beside `run_stream.py FILE`, all in one run.

One real Detector + Service (`stream/service.py` with `default_extensions`: WHIP ingest and /metrics, uvicorn on
127.0.0.1) and one CPU engine (`--engine`, default `onnxruntime`) for every row:

1. WHIP connect: an aiortc publisher (bench/whip_publisher.py, in its own process) sends a 640x480 30 fps test video
   with two faces (`bench.pipeline.make_video`); from its POST to the answer, to ICE+DTLS connected and its first
   frame sent (publisher side), to the first frame through the detector's loop, the first face and the first window
   score (when the loop sent those events to a sink); `--repeats` times, p50 and the range.
2. Capture-to-score latency p50/p95 (WindowScore t_scored - t_capture, per stream, from a sink) over `--seconds`
   after `--warmup`, for that stream published over WHIP, then for the same video read as a file paced to 30 fps
   (`sources.realtime`, looping like bench/live.py), one after the other on the same detector. "Capture" is when the
   frame enters the detector's capture buffer: for WHIP after the network and the VP8 decoder, for the file after
   PyAV's decoder.
3. Upload to report: a `--clip-seconds` (10) s 640x480 clip with two faces through `POST /api/uploads` until
   `GET /api/uploads/{id}` gives its report, then the same clip through `run_stream.py FILE` as a subprocess with the
   same `--cpu-engine`, window and weights (wall time to exit; its store says when its session started, i.e. how
   much of that was loading).

`--only share` runs instead the upload beside live cameras (bench/service_share.py): the same clip alone, beside 1
and beside 4 demo cameras, `--rounds` times, with the upload's time against alone and each camera's frames in.

Runs inside `tests.netns.private_network()` with `add_veth_pair()` (WebRTC peers need a non-loopback address), so it
needs root (or CAP_SYS_ADMIN and `ip`). About 1.5 minutes with the defaults on an idle 2-core machine (2 on a busy one).
Run: `sudo .venv/bin/python bench/service.py [--engine onnxruntime|auto|...] [--repeats 3] [--seconds 20]`.
`--only caps` runs instead the rows of bench/service_caps.py: request latency while source opens hang and uploads
queue, against the same requests on the idle service (`--requests` of each, default 40). `--only share [--rounds 2]`
runs the rows of bench/service_share.py: the same upload alone, beside 1 and beside 4 live cameras.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# As the detector runs (run_stream.py): OpenMP threads sleep when idle instead of spinning on shared cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import pytest  # tests.netns reports a missing system part through pytest's skip/fail

from bench.common import print_table
from bench.live import looping
from bench.pipeline import make_video
from bench.service_caps import CapsBenchError, caps_bench
from model.cpu import cpu_description
from stream.capture.references import SourceSpec
from stream.capture.sources import Source
from stream.config import ConfigError, Settings, with_overrides
from stream.detector import Detector, engine_label
from stream.records import AnnotatedFrame, Event, FaceUpdate, StreamState, WindowScore
from stream.service.app import Service, default_extensions
from stream.store import open_reader
from tests.netns import add_veth_pair, private_network

ROOT = Path(__file__).resolve().parent.parent
PUBLISHER = ROOT / "bench" / "whip_publisher.py"
FPS = 30
WAIT_S = 90.0  # for anything the bench waits on: far past what a loaded 2-core machine needs
ENDED = (StreamState.ENDED, StreamState.LOST, StreamState.FAILED)
CONNECT_MARKS = ("answer", "connected", "first frame sent", "first frame", "first face", "first score")


class BenchError(Exception):
    """Something the bench needs did not happen: one line for the user."""


# ---- what the loop did, and when -------------------------------------------------------------------------------------
class TimingSink:
    """A sink beside the store: when the loop first sent each kind of event per stream (monotonic), and every window
    score's capture-to-score latency."""

    def __init__(self) -> None:
        self.first_at: dict[tuple[type, str], float] = {}
        self.scores: dict[str, list[WindowScore]] = {}
        self._lock = threading.Lock()

    def send(self, events: Sequence[Event]) -> None:
        now = time.monotonic()
        with self._lock:
            for event in events:
                stream_id = getattr(event, "stream_id", None)
                if isinstance(stream_id, str):
                    self.first_at.setdefault((type(event), stream_id), now)
                if isinstance(event, WindowScore):
                    self.scores.setdefault(event.stream_id, []).append(event)

    def close(self) -> None:
        pass

    def first(self, kind: type, stream_id: str) -> float | None:
        with self._lock:
            return self.first_at.get((kind, stream_id))

    def scored_between(self, stream_id: str, start: float, end: float) -> list[WindowScore]:
        """The window scores of frames captured between two wall-clock times."""
        with self._lock:
            return [s for s in self.scores.get(stream_id, []) if start <= s.t_capture < end]


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(every_s)
    return value


# ---- a publisher in its own process ----------------------------------------------------------------------------------
@dataclass
class Publisher:
    """bench/whip_publisher.py running: its JSON lines arrive on a queue; `stop()` makes it DELETE and exit."""

    name: str
    process: subprocess.Popen[str]
    lines: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def start(cls, url: str, name: str, video: Path) -> Publisher:
        command = [sys.executable, str(PUBLISHER), url, name, str(video)]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        publisher = cls(name, process)
        threading.Thread(target=publisher._read, name=f"publisher-{name}", daemon=True).start()
        return publisher

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self.lines.put(json.loads(line))
            except json.JSONDecodeError:
                self.lines.put({"event": "error", "detail": f"unexpected output: {line.strip()[:200]}"})
        self.lines.put({"event": "exited"})

    def event(self, name: str, timeout_s: float = WAIT_S) -> dict[str, Any]:
        """The publisher's `name` event, waiting for it; BenchError if it reports an error or exits first."""
        deadline = time.monotonic() + timeout_s
        while name not in self.seen:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchError(f"the WHIP publisher sent no {name!r} within {timeout_s:g} s") from None
            if line["event"] == "error":
                raise BenchError(f"the WHIP publisher failed: {line['detail']}")
            if line["event"] == "exited":
                self.lines.put(line)  # for the next caller too
                raise BenchError(f"the WHIP publisher exited ({self.process.wait(10)}) before {name!r}")
            self.seen[line["event"]] = line
        return self.seen[name]

    def stop(self) -> None:
        """DELETE and exit (closing stdin tells it); killed if it does not."""
        try:
            if self.process.stdin is not None and not self.process.stdin.closed:
                self.process.stdin.close()
            self.process.wait(20)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            self.process.kill()
            self.process.wait(10)


# ---- the served detector ---------------------------------------------------------------------------------------------
@dataclass
class Served:
    detector: Detector
    url: str
    sink: TimingSink

    def source(self, stream_id: str) -> Source | None:
        return next((s for s in reversed(list(self.detector.sources)) if s.stream_id == stream_id), None)

    def state(self, stream_id: str) -> StreamState | None:
        health = next((h for h in self.detector.health() if h.stream_id == stream_id), None)
        return health.state if health is not None else None


def p(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def connect_once(served: Served, name: str, video: Path) -> tuple[dict[str, float], str]:
    """One publisher from its POST to the first window score of its faces: seconds from the POST per mark, and the
    codec it sent."""
    publisher = Publisher.start(served.url, name, video)
    try:
        answered = publisher.event("answered")
        wait_for(lambda: served.sink.first(WindowScore, name), WAIT_S, f"a window score of {name}")
        posted = answered["posted"]
        marks = {
            "answer": answered["answered"] - posted,
            "connected": publisher.event("connected")["at"] - posted,
            "first frame sent": publisher.event("first_frame")["at"] - posted,
        }
        for mark, kind in (("first frame", AnnotatedFrame), ("first face", FaceUpdate), ("first score", WindowScore)):
            at = served.sink.first(kind, name)
            if at is None:
                raise BenchError(f"{name}: a window score came before any {kind.__name__}")
            marks[mark] = at - posted
    finally:
        publisher.stop()
    deleted = publisher.event("deleted", 5)["status"]
    if deleted != 200:
        raise BenchError(f"the WHIP DELETE of {name} answered {deleted}")
    wait_for(lambda: served.state(name) in ENDED, WAIT_S, f"{name} to end")
    return marks, answered["codec"]


@dataclass(frozen=True)
class Latency:
    fps_in: float
    dropped: float  # of the frames read
    scored_per_face: float
    faces: int
    p50_ms: float
    p95_ms: float
    scores: int


def measure_latency(served: Served, stream_id: str, warmup_s: float, seconds: float) -> Latency:
    """Capture-to-score over `seconds` of a running stream, after `warmup_s` of it."""
    wait_for(lambda: served.sink.first(WindowScore, stream_id), WAIT_S, f"a window score of {stream_id}")
    time.sleep(warmup_s)
    source = served.source(stream_id)
    if source is None:
        raise BenchError(f"no source {stream_id!r} in the detector")
    frames0, dropped0, start = source.frames_read, source.dropped, time.time()
    time.sleep(seconds)
    frames, dropped, end = source.frames_read - frames0, source.dropped - dropped0, time.time()
    time.sleep(1.0)  # the frames captured just before `end` get scored
    scores = served.sink.scored_between(stream_id, start, end)
    if not scores:
        raise BenchError(f"{stream_id}: no window scores in {seconds:g} s")
    latencies = [1000 * (s.t_scored - s.t_capture) for s in scores]
    faces = len({s.track_id for s in scores})
    return Latency(
        fps_in=frames / (end - start),
        dropped=dropped / max(frames + dropped, 1),
        scored_per_face=len(scores) / faces / (end - start),
        faces=faces,
        p50_ms=p(latencies, 0.5),
        p95_ms=p(latencies, 0.95),
        scores=len(scores),
    )


def publish_for_latency(served: Served, video: Path, warmup_s: float, seconds: float) -> Latency:
    publisher = Publisher.start(served.url, "whip", video)
    try:
        publisher.event("answered")
        result = measure_latency(served, "whip", warmup_s, seconds)
    finally:
        publisher.stop()
    wait_for(lambda: served.state("whip") in ENDED, WAIT_S, "the WHIP stream to end")
    return result


def paced_file_latency(served: Served, video: Path, warmup_s: float, seconds: float) -> Latency:
    spec = SourceSpec("file", str(video), live=False, display=video.name)
    served.detector.open_source(spec, "paced", producer=lambda: looping(spec))
    try:
        return measure_latency(served, "paced", warmup_s, seconds)
    finally:
        served.detector.pipeline.remove_source("paced").result(30)


def upload(served: Served, clip: Path) -> tuple[float, float, dict[str, Any]]:
    """POST the clip; seconds to the 202 and to the report, and the finished upload."""
    body = clip.read_bytes()
    with httpx.Client(base_url=served.url, timeout=60) as client:
        posted = time.monotonic()
        accepted = client.post(
            "/api/uploads",
            params={"filename": clip.name},
            content=body,
            headers={"Content-Type": "application/octet-stream"},
        )
        answered = time.monotonic()
        if accepted.status_code != 202:
            raise BenchError(f"POST /api/uploads answered {accepted.status_code}: {accepted.text.strip()[:200]}")
        upload_id = accepted.json()["upload_id"]

        def finished() -> dict[str, Any] | None:
            state = client.get(f"/api/uploads/{upload_id}").json()
            return state if state["state"] in ("done", "failed") and state.get("report") else None

        done = wait_for(finished, 300, f"the report of upload {upload_id}", every_s=0.1)  # polls less: 2 cores
        reported = time.monotonic()
    if done["state"] != "done":
        raise BenchError(f"upload {upload_id} {done['state']}: {done.get('error')}")
    return answered - posted, reported - posted, done


def run_stream_cli(clip: Path, engine: str, window: int, db: Path) -> tuple[float, float, int]:
    """`run_stream.py CLIP` as a user runs it: wall time to exit, the part before its session started (loading), and
    the frames it read."""
    command = [sys.executable, str(ROOT / "run_stream.py"), str(clip), "--cpu-engine", engine, "--device", "cpu"]
    command += ["--window", str(window), "--db", str(db)]
    launched = time.time()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise BenchError("run_stream.py did not exit within 600 s") from None
    wall = time.time() - launched
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise BenchError(f"run_stream.py exited {done.returncode}: {last}")
    with open_reader(db) as reader:
        session = reader.latest_session()
        assert session is not None
        [stream] = reader.streams(session.session_id)
        frames = stream.health.frames_read if stream.health is not None else 0
    return wall, session.started_at - launched, frames


# ---- the run ---------------------------------------------------------------------------------------------------------
def ms(seconds: float) -> str:
    return f"{1000 * seconds:.0f}"


def connect_rows(runs: Sequence[dict[str, float]]) -> list[list[object]]:
    rows = []
    for mark in CONNECT_MARKS:
        values = [run[mark] for run in runs]
        rows.append([f"POST -> {mark}", ms(statistics.median(values)), f"{ms(min(values))}-{ms(max(values))}"])
    return rows


def latency_row(label: str, result: Latency) -> list[object]:
    return [
        label,
        f"{result.fps_in:.1f}",
        f"{100 * result.dropped:.0f}%",
        f"{result.scored_per_face:.1f} x {result.faces}",
        f"{result.p50_ms:.0f}",
        f"{result.p95_ms:.0f}",
        result.scores,
    ]


def bench_settings(args: argparse.Namespace, folder: Path) -> Settings:
    """The detector's settings for every row: the engine and window asked for, the store in `folder`."""
    overrides = {
        "model.window": args.window,
        "model.device": "cpu",
        "model.cpu_engine": args.engine,
        "pipeline.status_interval_s": 1e9,
        "sources.realtime": True,  # only files opened by name are paced: not uploads
        "clips.enabled": False,
        "store.db": str(folder / "service.db"),
        "service.port": 0,
    }
    if getattr(args, "upload_share", None) is not None:
        overrides["pipeline.upload_share"] = args.upload_share
    return with_overrides(Settings(), overrides, "bench")


def bench(args: argparse.Namespace, folder: Path) -> None:
    load_before = os.getloadavg()
    settings = bench_settings(args, folder)
    video = make_video(folder / "two_faces.mp4", 2, 150)  # 5 s, looped by the publisher and the paced file
    clip = make_video(folder / "clip.mp4", 2, FPS * args.clip_seconds)
    sink = TimingSink()
    with Detector(settings, sinks=[sink]) as detector:
        engine = engine_label(detector.engine)
        loop = threading.Thread(target=detector.run, kwargs={"serve": True}, name="loop", daemon=True)
        loop.start()
        service = Service(detector, settings.service, default_extensions(detector, settings.service))
        try:
            served = Served(detector, service.start(), sink)
            runs = [connect_once(served, f"connect{i}", video) for i in range(args.repeats)]
            connects, codec = [marks for marks, _ in runs], runs[0][1]
            whip = publish_for_latency(served, video, args.warmup, args.seconds)
            paced = paced_file_latency(served, video, args.warmup, args.seconds)
            to_202, to_report, uploaded = upload(served, clip)
        finally:
            service.stop()
            detector.stop()
            loop.join(30)
    cli_wall, cli_loading, cli_frames = run_stream_cli(clip, args.engine, args.window, folder / "cli.db")
    load_after = os.getloadavg()

    print(f"cpu: {cpu_description()}")
    print(
        f"engine {engine} (run_stream.py: --cpu-engine {args.engine}), window {args.window}, 640x480 30 fps, 2 faces; "
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)"
    )
    print(f"\nWHIP connect, aiortc publisher in its own process ({codec}), {args.repeats} runs:")
    print_table(["from the POST", "p50 ms", "range ms"], connect_rows(connects))
    print(f"\ncapture -> window score, {args.seconds:g} s after {args.warmup:g} s, one stream at a time:")
    print_table(
        ["source", "fps in", "dropped", "scored/s per face", "p50 ms", "p95 ms", "scores"],
        [latency_row(f"WHIP (aiortc, {codec})", whip), latency_row("file paced to 30 fps", paced)],
    )
    frames = uploaded["frames_done"]
    scoring, cli_scoring = to_report - to_202, cli_wall - cli_loading
    print(f"\n{args.clip_seconds} s clip ({clip.stat().st_size / 1e3:.0f} kB), 2 faces, to its report:")
    print_table(
        ["way", "total s", "before scoring", "scoring s", "frames", "frames/s"],
        [
            [
                "POST /api/uploads (service running)",
                f"{to_report:.1f}",
                f"{ms(to_202)} ms to the 202",
                f"{scoring:.1f}",
                frames,
                f"{frames / scoring:.1f}",
            ],
            [
                "run_stream.py FILE (subprocess)",
                f"{cli_wall:.1f}",
                f"{cli_loading:.1f} s loading",
                f"{cli_scoring:.1f}",
                cli_frames,
                f"{cli_frames / cli_scoring:.1f}",
            ],
        ],
    )
    print("(scoring: upload from the 202 to the report; run_stream.py from its session's start to its exit)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", default="onnxruntime", help="the CPU engine of every row (auto allowed)")
    parser.add_argument("--window", type=int, default=Settings().model.window)
    parser.add_argument("--repeats", type=int, default=3, help="WHIP connects to time")
    parser.add_argument("--seconds", type=float, default=20.0, help="latency measured per stream")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of a stream left out of its latency")
    parser.add_argument("--clip-seconds", type=int, default=10, help="length of the uploaded clip")
    parser.add_argument(
        "--only",
        choices=("all", "caps", "share"),
        default="all",
        help="caps: only the rows of bench/service_caps.py; share: only the upload beside 0, 1 and 4 cameras",
    )
    parser.add_argument("--requests", type=int, default=40, help="--only caps: requests of each kind per phase")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the share rows (--only share)")
    parser.add_argument("--upload-share", type=float, help="pipeline.upload_share (default: the config's)")
    args = parser.parse_args()
    if args.repeats < 1 or args.seconds <= 0 or args.warmup < 0 or args.clip_seconds < 1 or args.rounds < 1:
        parser.error("--repeats, --seconds, --clip-seconds and --rounds must be positive, --warmup not negative")
    try:
        with tempfile.TemporaryDirectory() as folder, private_network():
            add_veth_pair()
            if args.only == "caps":
                caps_bench(args.engine, args.window, max(1, args.requests), Path(folder))
            elif args.only == "share":
                from bench.service_share import bench_share  # it builds on this module's helpers

                bench_share(args, Path(folder))
            else:
                bench(args, Path(folder))
    except (pytest.skip.Exception, pytest.fail.Exception) as missing:
        sys.exit(f"error: {missing.msg} (bench/service.py runs in a private network namespace: run it as root)")
    except (BenchError, CapsBenchError, ConfigError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
