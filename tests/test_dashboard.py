"""The dashboard over stores the tests fill: `streamlit.testing.v1.AppTest` runs dashboard/app.py in-process.

Cards, alerts, the uncalibrated banner, empty and broken states, the threshold slider, the session picker;
reading while a detector process writes; what the dashboard imports; and `dashboard.launch` (in a private
network namespace, as every test that opens a socket).
"""

from __future__ import annotations

import ast
import json
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import data
from dashboard.launch import DashboardError, start_dashboard
from dashboard.verdicts import shown_verdict
from model.weights import UNCALIBRATED_WARNING
from stream.health import StreamHealth, StreamState
from stream.scores import Alert, VerdictState, WindowScore
from stream.store import SessionInfo, StoreReader, StoreWriter
from tests import media
from tests.netns import private_network

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "dashboard" / "app.py"
UNCALIBRATED = UNCALIBRATED_WARNING  # the one wording, from the model layer
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

    def __init__(self, writer: StoreWriter, info: SessionInfo = INFO, started_at: float | None = None) -> None:
        self.writer = writer
        self.t0 = time.time() - 60 if started_at is None else started_at
        self.sid = writer.start_session(info, started_at=self.t0)

    def stream(self, stream_id: str = "clip", kind: str = "file", state: StreamState = StreamState.LIVE) -> None:
        self.writer.add_stream(self.sid, stream_id, f"{stream_id}.mp4" if kind == "file" else "rtsp://cam", kind)
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
        self.writer.upsert_face(
            self.sid,
            stream_id,
            track_id,
            first_seen=t0,
            last_seen=t0 + n / 30 if last_seen is None else last_seen,
            first_t_media=0.0,
            last_t_media=(n - 1) / 30,
            state=state,
            verdict=verdict,
            rolling_p_fake=rolling,
            frames_scored=n,
            thumbnail_jpeg=thumbnail(),
        )


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The store's path, handed to the app through DEEPFAKE_STREAM_DB (the file is not made here)."""
    path = tmp_path / "runs" / "deepfake.db"
    monkeypatch.setenv(data.DB_ENV, str(path))
    return path


@pytest.fixture
def writer(db: Path) -> Iterator[StoreWriter]:
    with StoreWriter(db) as store:
        yield store


def dashboard() -> AppTest:
    """A fresh page load (a new browser session)."""
    return AppTest.from_file(str(APP), default_timeout=30).run()


def texts(at: AppTest) -> list[str]:
    """Every piece of text the page shows, in page order per element kind."""
    found = []
    for kind in ("markdown", "caption", "info", "warning", "error", "title", "subheader"):
        found += [str(element.value) for element in getattr(at, kind)]
    return found


def page_text(at: AppTest) -> str:
    return "\n".join(texts(at))


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def card_line(at: AppTest, track_id: int, stream_id: str = "clip") -> str:
    """The markdown line that heads a face card: `**face #N** · stream · <badge>`."""
    lines = [m.value for m in at.markdown if m.value.startswith(f"**face #{track_id}** · {stream_id}")]
    assert len(lines) == 1, lines
    return lines[0]


def charts(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]


# ---- honesty: the uncalibrated banner and the session's settings ------------------------------------------------


def test_uncalibrated_banner_and_unsure_verdicts(writer: StoreWriter) -> None:
    run = Run(writer, RANDOM_INFO)
    run.stream("demo", kind="demo")
    run.face(1, VerdictState.UNSURE, 0.495, stream_id="demo")
    writer.commit()
    at = dashboard()
    assert_clean(at)
    assert any(UNCALIBRATED in e.value for e in at.error)
    assert ":gray-badge[UNSURE]" in card_line(at, 1, "demo")
    assert "every verdict stays UNSURE" in page_text(at)


def test_calibrated_run_has_no_banner_and_shows_its_settings(writer: StoreWriter) -> None:
    run = Run(writer)
    run.stream()
    writer.commit()
    at = dashboard()
    assert_clean(at)
    assert not any(UNCALIBRATED in text for text in texts(at))
    settings = next(c.value for c in at.caption if c.value.startswith("checkpoint"))
    for part in (INFO.checkpoint, "window 20", "stride 1", "mode mean", "device cpu", "engine onnxruntime"):
        assert part in settings


# ---- faces, alerts ---------------------------------------------------------------------------------------------


def test_face_cards_show_verdict_and_score_from_the_store(db: Path, writer: StoreWriter) -> None:
    run = Run(writer)
    run.stream()
    run.face(1, VerdictState.FAKE, 0.8125)
    run.face(2, VerdictState.REAL, 0.1234)
    writer.commit()
    at = dashboard()
    assert_clean(at)
    assert ":red-badge[FAKE]" in card_line(at, 1)
    assert ":green-badge[REAL]" in card_line(at, 2)
    with StoreReader(db) as reader:
        for face in reader.faces(run.sid):
            assert face.rolling_p_fake is not None
            assert f"rolling p(fake) **{face.rolling_p_fake:.3f}**" in page_text(at)
    assert len(at.image) >= 2  # thumbnails
    # One timeline per face, in media time for a file, with the threshold drawn.
    specs = charts(at)
    assert len(specs) == 2
    for spec in specs:
        marks = [layer["mark"]["type"] for layer in spec["layer"]]
        assert "rule" in marks and "line" in marks
        assert spec["layer"][marks.index("line")]["encoding"]["x"]["field"] == "t_media"
        assert "threshold 0.50" in spec["description"]


def test_live_sources_chart_in_wall_time(writer: StoreWriter) -> None:
    run = Run(writer)
    run.stream("cam", kind="rtsp")
    run.face(1, VerdictState.REAL, 0.2, stream_id="cam")
    writer.commit()
    at = dashboard()
    assert_clean(at)
    (spec,) = charts(at)
    line = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "line")
    assert line["encoding"]["x"]["field"] == "wall"
    assert line["encoding"]["x"]["type"] == "temporal"


def test_gone_faces_stay_listed_with_their_final_verdict(writer: StoreWriter) -> None:
    run = Run(writer)
    run.stream()
    run.face(1, VerdictState.REAL, 0.2)
    run.face(2, VerdictState.FAKE, 0.9, state="gone")
    writer.commit()
    at = dashboard()
    assert_clean(at)
    markdown = [m.value for m in at.markdown]
    assert "**Faces that left**" in markdown
    # Live faces come first, the ones that left after the heading.
    assert markdown.index(card_line(at, 1)) < markdown.index("**Faces that left**") < markdown.index(card_line(at, 2))
    assert "· gone ·" in card_line(at, 2) and ":red-badge[FAKE]" in card_line(at, 2)
    assert any("final verdict" in c.value for c in at.caption)


def test_alerts_newest_first_with_clip_when_linked(tmp_path: Path, writer: StoreWriter) -> None:
    clip = media.write_video(tmp_path / "clip-2.mp4", media.render(media.one_face(), 5))
    run = Run(writer)
    run.stream()
    run.face(1, VerdictState.FAKE, 0.9)
    run.face(2, VerdictState.FAKE, 0.8)
    writer.write_alert(run.sid, Alert("clip", 1, "turned_fake", run.t0 + 0.5, 0.71, None))
    writer.write_alert(run.sid, Alert("clip", 2, "turned_fake", run.t0 + 1.0, 0.82, str(clip), t_media=12.5))
    writer.commit()
    at = dashboard()
    assert_clean(at)
    alerts = [m.value for m in at.markdown if "turned FAKE" in m.value]
    assert len(alerts) == 2
    assert "face #2" in alerts[0] and "p(fake) **0.820**" in alerts[0]  # newest first
    assert "at 12.50 s into the file" in alerts[0]  # analysts see where in the recording it happened
    assert "face #1" in alerts[1] and "p(fake) **0.710**" in alerts[1]
    assert len(at.get("video")) == 1  # the linked clip plays in the page
    assert any("evidence clip: not written yet" in c.value for c in at.caption)  # the other waits for its clip


def test_alert_clip_linked_later_appears_on_the_next_load(tmp_path: Path, writer: StoreWriter) -> None:
    run = Run(writer)
    run.stream()
    run.face(1, VerdictState.FAKE, 0.9)
    alert_id = writer.write_alert(run.sid, Alert("clip", 1, "turned_fake", run.t0 + 0.5, 0.71, None))
    writer.commit()
    assert not dashboard().get("video")
    clip = media.write_video(tmp_path / "clip-1.mp4", media.render(media.one_face(), 5))
    writer.set_alert_clip(alert_id, str(clip))
    writer.commit()
    assert len(dashboard().get("video")) == 1


# ---- controls ---------------------------------------------------------------------------------------------------


def test_threshold_slider_recolours_verdicts_in_the_page_only(db: Path, writer: StoreWriter) -> None:
    run = Run(writer)
    run.stream()
    run.face(1, VerdictState.REAL, 0.35)
    writer.commit()
    at = dashboard()
    assert ":green-badge[REAL]" in card_line(at, 1)
    slider = at.slider(key=f"threshold:{run.sid}")
    assert slider.value == pytest.approx(INFO.threshold)
    slider.set_value(0.2).run()  # 0.35 >= 0.2 + 0.1: FAKE at this threshold
    assert_clean(at)
    assert ":red-badge[FAKE]" in card_line(at, 1)
    assert any("detector's verdict REAL at 0.50" in c.value for c in at.caption)
    (spec,) = charts(at)
    assert "threshold 0.20" in spec["description"]  # the chart's threshold line moves with the slider
    at.slider(key=f"threshold:{run.sid}").set_value(0.32).run()  # inside the band: the face keeps its verdict
    assert ":green-badge[REAL]" in card_line(at, 1)
    with StoreReader(db) as reader:
        assert reader.faces(run.sid)[0].verdict == VerdictState.REAL  # the store is never written


def test_threshold_slider_cannot_make_an_uncalibrated_verdict(writer: StoreWriter) -> None:
    run = Run(writer, RANDOM_INFO)
    run.stream()
    run.face(1, VerdictState.UNSURE, 0.495)
    writer.commit()
    at = dashboard()
    at.slider(key=f"threshold:{run.sid}").set_value(0.1).run()
    assert_clean(at)
    assert ":gray-badge[UNSURE]" in card_line(at, 1)


def test_session_picker_browses_a_past_run(writer: StoreWriter) -> None:
    old = Run(writer, RANDOM_INFO, started_at=time.time() - 7200)
    old.stream("recorded")
    old.face(7, VerdictState.UNSURE, 0.49, stream_id="recorded")
    writer.end_session(old.sid, ended_at=old.t0 + 300)
    new = Run(writer)
    new.stream("cam", kind="rtsp")
    new.face(1, VerdictState.REAL, 0.1, stream_id="cam")
    writer.commit()
    at = dashboard()
    assert_clean(at)
    assert f"session `{new.sid}`" in page_text(at)
    assert not any(UNCALIBRATED in e.value for e in at.error)
    picker = at.selectbox(key="session")
    assert picker.value == ""  # follows the newest run
    picker.set_value(old.sid).run()
    assert_clean(at)
    text = page_text(at)
    assert f"session `{old.sid}`" in text and "recorded run" in text
    assert any(UNCALIBRATED in e.value for e in at.error)  # the banner follows the session shown
    assert card_line(at, 7, "recorded")
    assert not [m for m in at.markdown if m.value.startswith("**face #1** · cam")]


def test_stream_selector_and_time_range(writer: StoreWriter) -> None:
    run = Run(writer)
    run.stream("a")
    run.stream("b")
    run.face(1, VerdictState.REAL, 0.1, stream_id="a")
    run.face(2, VerdictState.REAL, 0.1, stream_id="b", state="gone", last_seen=run.t0 + 1)
    writer.commit()
    at = dashboard()
    assert card_line(at, 1, "a") and card_line(at, 2, "b")
    at.selectbox(key=f"stream:{run.sid}").set_value("a").run()
    assert_clean(at)
    assert card_line(at, 1, "a")
    assert not [m for m in at.markdown if m.value.startswith("**face #2**")]
    at.selectbox(key=f"stream:{run.sid}").set_value("").run()
    at.selectbox(key="range").set_value("last 30 s").run()  # face 2 left about a minute before the last write
    assert_clean(at)
    assert not [m for m in at.markdown if m.value.startswith("**face #2**")]
    assert "no faces in this time range (1 earlier)" in page_text(at)


# ---- empty and broken states ------------------------------------------------------------------------------------


def test_no_database_yet(db: Path) -> None:
    at = dashboard()
    assert_clean(at)
    assert any(f"No score store at `{db}` yet: start the detector with" in i.value for i in at.info)
    assert not db.exists()  # the dashboard never creates the store


def test_database_with_no_runs(writer: StoreWriter) -> None:
    at = dashboard()
    assert_clean(at)
    assert any("has no runs yet: start the detector with" in i.value for i in at.info)


def test_run_with_no_streams_and_stream_with_no_faces(writer: StoreWriter) -> None:
    run = Run(writer)
    writer.commit()
    at = dashboard()
    assert_clean(at)
    assert "this run has no streams yet" in page_text(at)
    run.stream()
    writer.commit()
    at = dashboard()
    assert_clean(at)
    assert "no faces yet" in page_text(at) and "no frame yet" in page_text(at)


def test_reconnecting_stream(writer: StoreWriter) -> None:
    run = Run(writer)
    run.stream("cam", kind="rtsp")
    health = StreamHealth("cam", StreamState.RECONNECTING, 0.0, 0.0, 0, 3, "connection refused by cam.local:554")
    writer.write_health(run.sid, health, time.time())
    writer.commit()
    at = dashboard()
    assert_clean(at)
    assert any("reconnecting" in w.value and "connection refused" in w.value for w in at.warning)


def test_detector_not_running_shows_last_data_with_its_age(
    writer: StoreWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:  # a detector killed two minutes ago: its last commit is that old
        patch.setattr(time, "time", lambda: 1_700_000_000.0)
        run = Run(writer, started_at=1_700_000_000.0 - 60)
        run.stream()
        run.face(1, VerdictState.FAKE, 0.9)
        writer.commit()
    at = dashboard()
    assert_clean(at)
    assert any("detector is not running" in w.value and "ago" in w.value for w in at.warning)
    assert ":red-badge[FAKE]" in card_line(at, 1)


def test_unreadable_store_is_an_error_message(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database" * 100)
    at = dashboard()
    assert_clean(at)
    assert any("cannot read the score store" in e.value for e in at.error)


# ---- reading while the detector writes ---------------------------------------------------------------------------

WRITER = """
import sys, time
import cv2, numpy as np
from stream.health import StreamHealth, StreamState
from stream.scores import Alert, WindowScore
from stream.store import SessionInfo, StoreWriter
w = StoreWriter(sys.argv[1])
sid = w.start_session(SessionInfo("ck.pt", True, 20, 1, "mean", 0.5, 0.1, "cpu", "torch", ["live.mp4"]))
w.add_stream(sid, "live", "live.mp4", "file")
w.commit()
jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
print("READY", flush=True)
end, i = time.monotonic() + float(sys.argv[2]), 0
while time.monotonic() < end:
    now = time.time()
    for track in (1, 2, 3):
        w.write_scores([WindowScore(sid, "live", track, i + k, (i + k) / 30, 20, 0.7, now, now) for k in range(10)])
        w.upsert_face(sid, "live", track, now, now, 0.0, i / 30, "live", "FAKE", 0.7, i + 10, jpeg)
    w.write_health(sid, StreamHealth("live", StreamState.LIVE, 30.0, 30.0, 0, 0, None), now)
    w.write_frame(sid, "live", jpeg, now)
    if i % 100 == 0:
        w.write_alert(sid, Alert("live", 1, "turned_fake", now, 0.7, None))
    w.commit()
    i += 10
    time.sleep(0.01)
w.end_session(sid)
w.close()
"""


def test_reading_while_the_detector_writes_never_errors(db: Path) -> None:
    db.parent.mkdir(parents=True)
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITER), str(db), "4"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "READY", child.stderr.read() if child.stderr else ""
        loads = 0
        while child.poll() is None:
            at = dashboard()
            assert_clean(at)
            assert not at.error, [e.value for e in at.error]
            loads += 1
        assert child.wait(30) == 0, child.stderr.read() if child.stderr else ""
        assert loads >= 3, loads
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


# ---- pure parts --------------------------------------------------------------------------------------------------


def test_db_path_argument_then_environment_then_default() -> None:
    assert data.db_path(["--db", "a.db"], {data.DB_ENV: "b.db"}) == Path("a.db")
    assert data.db_path(["-q", "tests/x.py"], {data.DB_ENV: "b.db"}) == Path("b.db")  # pytest's argv under AppTest
    assert data.db_path([], {}) == Path("runs/deepfake.db")


def test_page_redraws_when_the_store_a_run_a_stream_or_the_run_state_appears(db: Path) -> None:
    """The watcher reruns the whole page when this fingerprint changes, and only then."""
    seen = [data.fingerprint(db, data.LATEST)]  # no store yet
    with StoreWriter(db) as writer:
        seen.append(data.fingerprint(db, data.LATEST))  # a store with no runs
        run = Run(writer)
        writer.commit()
        seen.append(data.fingerprint(db, data.LATEST))  # a run
        run.stream()
        writer.commit()
        seen.append(data.fingerprint(db, data.LATEST))  # its first stream
        run.face(1, VerdictState.REAL, 0.2)
        writer.commit()
        assert data.fingerprint(db, data.LATEST) == seen[-1]  # new scores: the fragments show them, no redraw
        writer.end_session(run.sid)
        seen.append(data.fingerprint(db, data.LATEST))  # the run ended
        assert data.fingerprint(db, run.sid) == seen[-1]  # the same run, picked by its id
    assert len(set(seen)) == len(seen), seen


@pytest.mark.parametrize(
    ("stored", "rolling", "threshold", "calibrated", "expected"),
    [
        ("REAL", 0.35, 0.5, True, "REAL"),  # the detector's own threshold: its verdict as stored
        ("UNSURE", 0.9, 0.5, True, "UNSURE"),  # (even where it has not decided yet)
        ("REAL", 0.35, 0.25, True, "FAKE"),  # 0.35 >= 0.25 + 0.1
        ("FAKE", 0.35, 0.75, True, "REAL"),  # 0.35 <= 0.75 - 0.1
        ("FAKE", 0.35, 0.30, True, "FAKE"),  # inside the band the face keeps its verdict
        ("REAL", 0.35, 0.30, True, "REAL"),
        ("UNSURE", 0.9, 0.1, False, "UNSURE"),  # uncalibrated: never a verdict
        ("UNSURE", None, 0.1, True, "UNSURE"),  # not scored yet
    ],
)
def test_shown_verdict(stored: str, rolling: float | None, threshold: float, calibrated: bool, expected: str) -> None:
    assert shown_verdict(stored, rolling, threshold, 0.5, 0.1, calibrated) == expected


def test_face_summaries_as_csv_and_json(db: Path, writer: StoreWriter) -> None:
    run = Run(writer)
    run.stream()
    run.face(1, VerdictState.FAKE, 0.75, n=30)
    writer.commit()
    with StoreReader(db) as reader:
        frame = data.summaries_frame(reader, run.sid)
        session = reader.sessions()[0]
    csv = data.summaries_csv(frame).decode().splitlines()
    assert csv[0].split(",") == data.SUMMARY_COLUMNS
    row = dict(zip(data.SUMMARY_COLUMNS, csv[1].split(","), strict=True))
    assert row["verdict"] == "FAKE" and row["frames_scored"] == "30" and float(row["mean_p_fake"]) == 0.75
    assert float(row["first_media_s"]) == 0.0 and float(row["last_media_s"]) == pytest.approx(29 / 30)
    document = json.loads(data.summaries_json(frame, session))
    assert document["checkpoint"] == INFO.checkpoint and document["calibrated"] is True
    assert document["faces"][0]["max_p_fake"] == 0.75 and document["faces"][0]["face"] == 1
    at = dashboard()
    assert [b.label for b in at.download_button] == ["Download CSV", "Download JSON"]


def test_dashboard_imports_only_the_store_from_the_project() -> None:
    project = {"stream", "model", "run_stream", "dashboard", "tests", "bench"}
    for path in (ROOT / "dashboard").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in project:
                    assert name == "stream.store" or name.startswith("dashboard"), f"{path.name} imports {name}"


# ---- launching the dashboard (a real server: in a private network namespace) -------------------------------------


@pytest.fixture
def private_netns() -> Iterator[None]:
    with private_network():
        yield


def test_start_dashboard_serves_the_page_and_stops(db: Path, private_netns: None) -> None:
    dashboard_process = start_dashboard(db)
    try:
        assert dashboard_process.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(dashboard_process.url, timeout=10) as response:
            assert response.status == 200
    finally:
        first = dashboard_process.stop()
    assert first is not None and not dashboard_process.running
    assert dashboard_process.stop() == first  # idempotent
    assert not db.exists()


def test_start_dashboard_says_why_it_died(db: Path, private_netns: None) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DashboardError, match="exited with status"):
            start_dashboard(db, port=port)


def test_the_dashboard_uses_the_model_layers_uncalibrated_wording() -> None:
    from dashboard.views import UNCALIBRATED as shown

    assert shown == UNCALIBRATED_WARNING
