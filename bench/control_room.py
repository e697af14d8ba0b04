"""The dashboard as the control room (issue 13): upload-to-report time through the page against `run_stream.py` on the
same clip in the same run, and the "Analyse a video" page's render time with 20 past uploads listed.

1. Upload to report: a `--clip-seconds` (10) s 640x480 30 fps clip with two faces (`bench.pipeline.make_video`).
   `run_stream.py --serve 0 --dashboard` with a token runs as the user would start it (detector, service, and the
   dashboard as its child with the token in its environment); headless Chromium (Playwright, /usr/bin/chromium)
   opens the page's "Analyse a video", gives the clip to its uploader and waits for the overall verdict to show:
   the time from choosing the file to the verdict on screen (sending through Streamlit, then to the service, the
   scoring, the page polling twice a second, the report drawn). Then `run_stream.py CLIP` on the same clip with the
   same engine and window: wall time to exit, and the part after its session started (loading excluded).
2. Page render: a fresh `AppTest` run of the page (the server's work for a new browser tab) over a store holding
   `--uploads` (20) finished uploads of 2 faces and 150 window scores each, with no detector running: the list
   alone, and the list with one report opened (its face cards and charts); an empty store is the baseline.

Runs inside `tests.netns.private_network()` (needs root or CAP_SYS_ADMIN). About a minute with the defaults.
Run: `.venv/bin/python bench/control_room.py [--repeats 3] [--uploads 20] [--engine onnxruntime]`.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2
import numpy as np
from streamlit.testing.v1 import AppTest

from bench.common import median_seconds, print_table
from bench.pipeline import make_video
from dashboard.data import DB_ENV
from stream.records import FaceUpdate, StreamHealth, StreamInfo, StreamState, VerdictState, WindowScore
from stream.store import SessionInfo, open_reader, open_writer
from tests.netns import private_network

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "dashboard" / "app.py"
CHROMIUM = "/usr/bin/chromium"
TOKEN = "bench-control-room"
LINE = re.compile(r"^(dashboard|service): (http://\S+)$")


def served(db: Path, engine: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`run_stream.py --serve 0 --dashboard` with a token; the process and the dashboard's URL once both listen."""
    command = [sys.executable, "run_stream.py", "--serve", "0", "--dashboard", "--db", str(db), "--cpu-engine", engine]
    env = {**os.environ, "DEEPFAKE_STREAM_TOKEN": TOKEN}
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr)
    assert process.stdout is not None
    urls: dict[str, str] = {}
    buffered = b""
    deadline = time.monotonic() + 180
    while len(urls) < 2:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"run_stream.py --serve did not start: {log.read_text()[-2000:]}")
        if select.select([process.stdout], [], [], 0.5)[0]:
            buffered += os.read(process.stdout.fileno(), 4096)
            *lines, rest = buffered.split(b"\n")
            buffered = rest
            for line in lines:
                if found := LINE.match(line.decode().strip()):
                    urls[found.group(1)] = found.group(2)
    return process, urls["dashboard"]


def upload_through_page(dashboard: str, clip: Path, repeats: int, profile: Path) -> list[float]:
    from playwright.sync_api import expect, sync_playwright

    times = []
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
            viewport={"width": 1400, "height": 1800},
        )
        try:
            for _ in range(repeats):
                page = context.new_page()
                page.goto(f"{dashboard}/?page=analyse")
                expect(page.get_by_text("per video").first).to_be_visible(timeout=60_000)
                started = time.perf_counter()
                page.locator('input[type="file"]').set_input_files(str(clip))
                verdict = page.locator(".st-key-upload-verdict")
                expect(verdict).to_contain_text(f"overall verdict for {clip.name}", timeout=600_000)
                times.append(time.perf_counter() - started)
                page.close()
        finally:
            context.close()
    return times


def run_stream_file(clip: Path, db: Path, engine: str) -> tuple[float, float]:
    """Wall time of `run_stream.py CLIP`, and the part after its session started."""
    launched = time.time()
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "run_stream.py", str(clip), "--db", str(db), "--cpu-engine", engine],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"run_stream.py failed: {done.stderr[-2000:]}")
    with open_reader(db) as reader:
        session = reader.latest_session()
    assert session is not None
    return wall, wall - (session.started_at - launched)


def fill_uploads(db: Path, uploads: int, faces: int = 2, scores: int = 150) -> str:
    """`uploads` finished uploads in one run, as the detector writes them; the key of the last one."""
    info = SessionInfo("uncalibrated-random", False, 20, 1, "mean", 0.5, 0.1, "cpu", "onnxruntime", [])
    thumbnail = cv2.imencode(".jpg", np.full((96, 96, 3), 128, np.uint8))[1].tobytes()
    rng = np.random.default_rng(0)
    t0 = time.time() - 3600
    with open_writer(db) as writer:
        sid = writer.start_session(info, started_at=t0)
        for index in range(uploads):
            stream_id = f"upload-{index:08x}"
            writer.add_stream(sid, StreamInfo(stream_id, f"clip-{index}.mp4", "upload"))
            for track in range(1, faces + 1):
                p = rng.uniform(0.3, 0.7, scores)
                writer.write_scores(
                    [
                        WindowScore(sid, stream_id, track, i, i / 30, 20, float(p[i]), t0 + i / 30, t0 + i / 30 + 0.1)
                        for i in range(scores)
                    ]
                )
                end = t0 + scores / 30
                update = FaceUpdate(
                    stream_id, track, t0, end, 0.0, scores / 30, "gone", VerdictState.UNSURE, float(p[-1]), scores,
                    thumbnail, crops=scores + 19,
                )  # fmt: skip
                writer.write_face(sid, update)
            health = StreamHealth(stream_id, StreamState.ENDED, 30.0, 30.0, 0, 0, None, frames_read=scores + 19)
            writer.write_health(sid, health, t0 + index)
        writer.end_session(sid)
    return f"{sid}/upload-{uploads - 1:08x}"


def page_render(db: Path, repeats: int, opened: str | None) -> tuple[float, int]:
    os.environ[DB_ENV] = str(db)

    def load() -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.query_params["page"] = "analyse"
        if opened:
            at.session_state["upload:open"] = opened
        at.run()
        if at.exception:
            raise RuntimeError(f"the page raised: {[e.value for e in at.exception]}")
        return at

    charts = len(load().get("vega_lite_chart"))
    return median_seconds(load, repeats, warmup=1), charts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--engine", default="onnxruntime")
    args = parser.parse_args()
    os.environ.pop("DEEPFAKE_STREAM_DASHBOARD_PASSWORD", None)

    with tempfile.TemporaryDirectory() as folder, private_network():
        work = Path(folder)
        clip = make_video(work / "clip.mp4", faces=2, frames=round(args.clip_seconds * 30))
        process, dashboard = served(work / "served.db", args.engine, work / "served.log")
        try:
            page_times = upload_through_page(dashboard, clip, args.repeats, work / "profile")
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(60)
        cli = [run_stream_file(clip, work / f"cli{i}.db", args.engine) for i in range(args.repeats)]

        empty = work / "empty.db"
        open_writer(empty).close()
        listed = work / "listed.db"
        last = fill_uploads(listed, args.uploads)
        page_render(empty, 1, None)  # the first AppTest run in a process pays for Streamlit's imports: not counted
        renders = [
            ("empty store (baseline)", *page_render(empty, args.repeats * 3, None)),
            (f"{args.uploads} past uploads listed", *page_render(listed, args.repeats * 3, None)),
            (f"{args.uploads} listed + one report open", *page_render(listed, args.repeats * 3, last)),
        ]

    print(
        f"\nupload to report, {args.clip_seconds:g} s 640x480 clip, 2 faces, engine {args.engine}, "
        f"{os.cpu_count()} CPUs"
    )
    rows = [["through the page (file chosen -> verdict shown)", *_stats(page_times)]]
    rows.append(["run_stream.py CLIP (wall, with loading)", *_stats([wall for wall, _ in cli])])
    rows.append(["run_stream.py CLIP (after its session started)", *_stats([scored for _, scored in cli])])
    print_table(["path", "median s", "min s", "max s"], rows)
    print(f"\n'Analyse a video' page render (fresh AppTest run, no detector running), median of {args.repeats * 3}")
    print_table(["store", "charts", "median ms"], [[name, charts, s * 1e3] for name, s, charts in renders])


def _stats(values: list[float]) -> list[float]:
    ordered = sorted(values)
    return [ordered[len(ordered) // 2], ordered[0], ordered[-1]]


if __name__ == "__main__":
    main()
