"""Dashboard page load over a store holding 10,000 window scores, against an empty run in the same process.

A page load here is one fresh `streamlit.testing.v1.AppTest` run of dashboard/app.py: the whole script, every
store query, every chart built and serialised (what the server does for a new browser tab; the browser's own
drawing is not included). The stores are made in a temp dir through `ScoreWriter`, as the detector fills one.
The target (issue: "a page load with 10,000 stored scores renders in under a second") is checked here, not in
a timed test. Run: `.venv/bin/python bench/dashboard.py [--scores 10000] [--faces 8] [--repeats 7]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2
import numpy as np
from streamlit.testing.v1 import AppTest

from bench.common import median_seconds, print_table
from dashboard.data import DB_ENV
from stream.records import (
    Alert,
    AnnotatedFrame,
    FaceUpdate,
    StreamHealth,
    StreamInfo,
    StreamState,
    VerdictState,
    WindowScore,
)
from stream.store import SessionInfo, open_writer

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
INFO = SessionInfo("model_87_acc_20_frames_final_data.pt", True, 20, 1, "mean", 0.5, 0.1, "cpu", "onnxruntime", [])
TARGET_S = 1.0


def jpeg(height: int, width: int) -> bytes:
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def fill(db: Path, scores: int, faces: int, kind: str) -> None:
    """One run, one stream of `kind`, `faces` faces sharing `scores` window scores, a frame, health and alerts."""
    rng = np.random.default_rng(1)
    t0 = time.time() - 600
    with open_writer(db) as writer:
        sid = writer.start_session(INFO, started_at=t0)
        writer.add_stream(sid, StreamInfo("cam", "cam.mp4" if kind == "file" else "rtsp://cam.local/stream", kind))
        writer.write_health(sid, StreamHealth("cam", StreamState.LIVE, 30.0, 29.0, 12, 0, None), time.time())
        writer.write_frame(sid, AnnotatedFrame("cam", time.time(), jpeg(360, 640)))
        thumbnail = jpeg(96, 96)
        per_face = scores // faces if faces else 0
        for track in range(1, faces + 1):
            p = rng.uniform(0.05, 0.95, per_face)
            writer.write_scores(
                [
                    WindowScore(sid, "cam", track, i, i / 30, 20, float(p[i]), t0 + i / 30, t0 + i / 30 + 0.05)
                    for i in range(per_face)
                ]
            )
            verdict = VerdictState.FAKE if track % 2 else VerdictState.REAL
            state = "live" if track <= faces // 2 else "gone"
            writer.write_face(
                sid,
                FaceUpdate(
                    "cam",
                    track,
                    t0,
                    t0 + per_face / 30,
                    0.0,
                    per_face / 30,
                    state,
                    verdict,
                    float(p[-1]),
                    per_face,
                    thumbnail,
                ),
            )
            if verdict is VerdictState.FAKE:
                writer.write_alert(sid, Alert("cam", track, "turned_fake", t0 + track, 0.8, None))
        writer.end_session(sid)


def page_load() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    if at.exception:
        raise RuntimeError(f"the page raised: {[e.value for e in at.exception]}")
    return at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scores", type=int, default=10_000)
    parser.add_argument("--faces", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    cases = [
        ("empty run (baseline)", 0, 0, "file"),
        (f"{args.scores:,} scores, {args.faces} faces, file", args.scores, args.faces, "file"),
        (f"{args.scores:,} scores, {args.faces} faces, live", args.scores, args.faces, "rtsp"),
        (f"{args.scores:,} scores, 1 face, file", args.scores, 1, "file"),
    ]
    rows = []
    baseline = None
    with tempfile.TemporaryDirectory() as folder:
        for index, (name, scores, faces, kind) in enumerate(cases):
            db = Path(folder) / f"case{index}.db"
            fill(db, scores, faces, kind)
            os.environ[DB_ENV] = str(db)
            charts = len(page_load().get("vega_lite_chart"))
            seconds = median_seconds(page_load, args.repeats, warmup=1)
            baseline = seconds if baseline is None else baseline
            verdict = "ok" if seconds < TARGET_S else "OVER"
            rows.append([name, charts, seconds * 1e3, seconds / baseline, f"{verdict} (< {TARGET_S * 1e3:.0f} ms)"])
    print(f"dashboard page load (fresh AppTest run), median of {args.repeats}; {os.cpu_count()} CPUs")
    print_table(["store", "charts", "median ms", "x empty", "target"], rows)


if __name__ == "__main__":
    main()
