"""The upload's share beside live cameras (issue 20 item 6; `bench/service.py --only share`): the same clip through
`POST /api/uploads` alone, beside 1 live camera and beside 4, one after the other on the same detector.

The cameras are the built-in `demo` source (640x480 at 30 fps, two faces, paced like a camera). For each row: the
upload's wall time from the POST to its report and its ratio to the upload alone; each camera's frames in (the
frames the loop processed a second) before the upload, alone, and during it, and its frames dropped during it; and the
overload banner's share for it (over the last `pipeline.overload_window_s`) before the upload and at its end: past
`pipeline.overload_share` the status line and the dashboard say "overloaded". Done
when, beside one camera, the upload takes at most `TARGET_RATIO` times its time alone while the camera keeps at least
`TARGET_FPS` frames in.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import print_table
from bench.pipeline import make_video
from bench.service import FPS, WAIT_S, BenchError, Served, TimingSink, bench_settings, upload, wait_for
from model.cpu import cpu_description
from stream.detector import Detector, engine_label
from stream.records import StreamHealth, StreamState
from stream.service.app import Service, default_extensions

TARGET_RATIO = 3.5
TARGET_FPS = 10.0
BEFORE_S = 3.0  # each camera's frames in measured alone over this long, after it has run as long


@dataclass(frozen=True)
class Row:
    cameras: int
    wall_s: float
    frames: int
    fps_before: list[float]  # per camera
    fps_during: list[float]
    dropped_during: list[int]
    overload_before: list[float]
    overload_share: list[float]


def processed(served: Served, names: list[str]) -> list[int]:
    """Frames of each camera the loop has taken so far: read, less those its buffer dropped (thinned or not) and
    those still in it (the source's own counters: the published health may be a second old)."""
    sources = [served.source(name) for name in names]
    if any(source is None for source in sources):
        raise BenchError(f"a camera of {names} is not in the detector")
    return [s.frames_read - s.dropped - len(s.buffer) for s in sources if s is not None]


def healths(served: Served, names: list[str]) -> dict[str, StreamHealth]:
    found = {h.stream_id: h for h in served.detector.health()}
    missing = [name for name in names if name not in found]
    if missing:
        raise BenchError(f"no health for camera {missing[0]!r}")
    return {name: found[name] for name in names}


def rates(served: Served, names: list[str], since: list[int], began: float) -> list[float]:
    seconds = time.monotonic() - began
    return [(now - then) / seconds for now, then in zip(processed(served, names), since, strict=True)]


def beside(served: Served, clip: Path, cameras: int, round_no: int) -> Row:
    """Upload the clip beside `cameras` demo cameras (opened for it, stopped after)."""
    names = [f"cam{round_no}-{cameras}-{i}" for i in range(cameras)]
    for name in names:
        served.detector.open_source("demo", name)
    try:
        for name in names:
            wait_for(lambda n=name: served.state(n) == StreamState.LIVE, WAIT_S, f"{name} to run")
        time.sleep(BEFORE_S)
        since, began = processed(served, names), time.monotonic()
        time.sleep(BEFORE_S)
        before = rates(served, names, since, began)
        start, since, began = healths(served, names), processed(served, names), time.monotonic()
        overload_before = [start[n].overload_share for n in names]
        _, wall, done = upload(served, clip)
        during = rates(served, names, since, began)
        end = healths(served, names)
    finally:
        for name in names:
            served.detector.pipeline.remove_source(name).result(30)
    return Row(
        cameras=cameras,
        wall_s=wall,
        frames=done["frames_done"],
        fps_before=before,
        fps_during=during,
        dropped_during=[end[n].frames_dropped - start[n].frames_dropped for n in names],
        overload_before=overload_before,
        overload_share=[end[n].overload_share for n in names],
    )


def spread(values: list[float], digits: int = 1) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


def bench_share(args: argparse.Namespace, folder: Path) -> None:
    load_before = os.getloadavg()
    settings = bench_settings(args, folder)
    clip = make_video(folder / "clip.mp4", 2, FPS * args.clip_seconds)
    rows: list[Row] = []
    with Detector(settings, sinks=[TimingSink()]) as detector:
        engine = engine_label(detector.engine)
        loop = threading.Thread(target=detector.run, kwargs={"serve": True}, name="loop", daemon=True)
        loop.start()
        service = Service(detector, settings.service, default_extensions(detector, settings.service))
        try:
            served = Served(detector, service.start(), TimingSink())
            upload(served, clip)  # warms the engine and the detector's paths: not timed
            for round_no in range(args.rounds):
                rows += [beside(served, clip, cameras, round_no) for cameras in (0, 1, 4)]
        finally:
            service.stop()
            detector.stop()
            loop.join(30)
    load_after = os.getloadavg()

    print(f"cpu: {cpu_description()}")
    print(
        f"engine {engine}, window {args.window}, pipeline.upload_share {settings.pipeline.upload_share:g}, "
        f"pipeline.min_track_fps {settings.pipeline.min_track_fps:g}; load average before {load_before[0]:.2f}, "
        f"after {load_after[0]:.2f} (1 min)"
    )
    print(
        f"\n{args.clip_seconds} s 640x480 clip, 2 faces, POST /api/uploads to its report, beside demo cameras "
        f"(640x480, 30 fps, 2 faces each), {args.rounds} round(s):"
    )
    table = []
    for round_no in range(args.rounds):
        batch = rows[3 * round_no : 3 * round_no + 3]
        alone = batch[0].wall_s
        for row in batch:
            table.append(
                [
                    round_no + 1,
                    "alone" if not row.cameras else f"beside {row.cameras} camera{'s' if row.cameras > 1 else ''}",
                    f"{row.wall_s:.1f}",
                    f"{row.wall_s / alone:.2f}x",
                    f"{row.frames / row.wall_s:.1f}",
                    spread(row.fps_before),
                    spread(row.fps_during),
                    spread([float(d) for d in row.dropped_during], 0),
                    spread([100 * s for s in row.overload_before], 0),
                    spread([100 * s for s in row.overload_share], 0),
                ]
            )
    headers = ["round", "upload", "wall s", "vs alone", "frames/s", "camera fps in before", "during", "dropped"]
    print_table([*headers, "overload % before", "at the end"], table)
    ones = [(row, rows[rows.index(row) - 1].wall_s) for row in rows if row.cameras == 1]
    met = all(row.wall_s / alone <= TARGET_RATIO and min(row.fps_during) >= TARGET_FPS for row, alone in ones)
    print(
        f"\nbeside one camera: upload <= {TARGET_RATIO:g}x its time alone with the camera >= {TARGET_FPS:g} fps in: "
        f"{'met' if met else 'NOT met'} in {len(ones)} round(s)"
    )
