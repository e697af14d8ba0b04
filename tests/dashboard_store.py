"""A dashboard test's store: a session filled through the writer as the detector would, and a fresh page load."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
from streamlit.testing.v1 import AppTest

from stream.records import FaceUpdate, StreamHealth, StreamInfo, StreamState, VerdictState, WindowScore
from stream.store import ScoreWriter, SessionInfo

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "dashboard" / "app.py"
INFO = SessionInfo(
    checkpoint="model_87_acc_20_frames_final_data.pt",
    calibrated=True,
    window=20,
    stride=1,
    window_mode="mean",
    threshold=0.5,
    hysteresis=0.1,
    device="cpu",
    engine="onnxruntime",
    sources=["clip.mp4"],
)
RANDOM_INFO = SessionInfo("random seeded seed-arch", False, 10, 1, "mean", 0.5, 0.1, "cpu", "torch", ["demo"])


def thumbnail() -> bytes:
    ok, encoded = cv2.imencode(".jpg", np.full((24, 24, 3), 128, np.uint8))
    assert ok
    return encoded.tobytes()


class Run:
    """One session in a test store, filled through the writer as the detector would."""

    def __init__(self, writer: ScoreWriter, info: SessionInfo = INFO, started_at: float | None = None) -> None:
        self.writer = writer
        self.t0 = time.time() - 60 if started_at is None else started_at
        self.sid = writer.start_session(info, started_at=self.t0)

    def stream(self, stream_id: str = "clip", kind: str = "file", state: StreamState = StreamState.LIVE) -> None:
        self.writer.add_stream(
            self.sid, StreamInfo(stream_id, f"{stream_id}.mp4" if kind == "file" else "rtsp://cam", kind)
        )
        self.writer.write_health(self.sid, StreamHealth(stream_id, state, 30.0, 24.5, 3, 0, None), time.time())

    def face(
        self,
        track_id: int,
        verdict: VerdictState,
        rolling: float,
        stream_id: str = "clip",
        state: str = "live",
        n: int = 40,
        last_seen: float | None = None,
    ) -> None:
        t0 = self.t0
        scores = [
            WindowScore(self.sid, stream_id, track_id, i, i / 30, 20, rolling, t0 + i / 30, t0 + i / 30 + 0.05)
            for i in range(n)
        ]
        self.writer.write_scores(scores)
        self.writer.write_face(
            self.sid,
            FaceUpdate(
                stream_id,
                track_id,
                t0,
                t0 + n / 30 if last_seen is None else last_seen,
                0.0,
                (n - 1) / 30,
                state,
                verdict,
                rolling,
                n,
                thumbnail(),
            ),
        )


def dashboard() -> AppTest:
    """A fresh page load (a new browser session)."""
    return AppTest.from_file(str(APP), default_timeout=30).run()
