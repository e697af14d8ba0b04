"""The dashboard page over stores the tests fill: `streamlit.testing.v1.AppTest` runs dashboard/app.py in-process.

Cards, alerts, the uncalibrated banner, empty and broken states, the threshold slider, the session picker, and
reading while a detector process writes. Its parts on their own and its launcher: test_dashboard_parts.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from model.labels import UNCALIBRATED_WARNING
from stream.records import Alert, StreamHealth, StreamInfo, StreamState, VerdictState
from stream.store import ScoreWriter, open_reader
from tests import media
from tests.dashboard_store import INFO, RANDOM_INFO, ROOT, Run, dashboard

UNCALIBRATED = UNCALIBRATED_WARNING  # the one wording, from the model layer


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


def test_uncalibrated_banner_and_unsure_verdicts(writer: ScoreWriter) -> None:
    run = Run(writer, RANDOM_INFO)
    run.stream("demo", kind="demo")
    run.face(1, VerdictState.UNSURE, 0.495, stream_id="demo")
    writer.commit()
    at = dashboard()
    assert_clean(at)
    assert any(UNCALIBRATED in e.value for e in at.error)
    assert ":gray-badge[UNSURE]" in card_line(at, 1, "demo")
    assert "every verdict stays UNSURE" in page_text(at)


def test_calibrated_run_has_no_banner_and_shows_its_settings(writer: ScoreWriter) -> None:
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


def test_face_cards_show_verdict_and_score_from_the_store(db: Path, writer: ScoreWriter) -> None:
    run = Run(writer)
    run.stream()
    run.face(1, VerdictState.FAKE, 0.8125)
    run.face(2, VerdictState.REAL, 0.1234)
    writer.commit()
    at = dashboard()
    assert_clean(at)
    assert ":red-badge[FAKE]" in card_line(at, 1)
    assert ":green-badge[REAL]" in card_line(at, 2)
    with open_reader(db) as reader:
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


def test_live_sources_chart_in_wall_time(writer: ScoreWriter) -> None:
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


def test_gone_faces_stay_listed_with_their_final_verdict(writer: ScoreWriter) -> None:
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


def clip_in(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return media.write_video(folder / name, media.render(media.one_face(), 5))


def test_alerts_newest_first_with_clip_when_linked(db: Path, writer: ScoreWriter) -> None:
    clip = clip_in(db.parent / "clips", "clip-2.mp4")  # where the detector writes clips by default
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


def test_alert_clip_linked_later_appears_on_the_next_load(db: Path, writer: ScoreWriter) -> None:
    run = Run(writer)
    run.stream()
    run.face(1, VerdictState.FAKE, 0.9)
    alert_id = writer.write_alert(run.sid, Alert("clip", 1, "turned_fake", run.t0 + 0.5, 0.71, None))
    writer.commit()
    assert not dashboard().get("video")
    clip = clip_in(db.parent / "clips", "clip-1.mp4")
    writer.set_alert_clip(alert_id, str(clip))
    writer.commit()
    assert len(dashboard().get("video")) == 1


def test_a_clip_is_played_only_from_inside_the_clips_folder(tmp_path: Path, db: Path, writer: ScoreWriter) -> None:
    outside = clip_in(tmp_path / "elsewhere", "private.mp4")  # a real video, but not in the clips folder
    (db.parent / "clips").mkdir(parents=True)
    sneaky = db.parent / "clips" / "link.mp4"
    sneaky.symlink_to(outside)  # inside by name, outside once followed
    run = Run(writer)
    run.stream()
    run.face(1, VerdictState.FAKE, 0.9)
    named = [str(outside), "clips/../../elsewhere/private.mp4", str(sneaky)]
    for i, clip in enumerate(named):
        writer.write_alert(run.sid, Alert("clip", 1, "turned_fake", run.t0 + i, 0.7, clip))
    writer.commit()
    at = dashboard()
    assert_clean(at)
    assert not at.get("video")  # none of them is read
    assert sum("clip unavailable" in c.value for c in at.caption) == len(named)
    assert not any("private.mp4" in text for text in texts(at))


# ---- controls ---------------------------------------------------------------------------------------------------


def test_threshold_slider_recolours_verdicts_in_the_page_only(db: Path, writer: ScoreWriter) -> None:
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
    with open_reader(db) as reader:
        assert reader.faces(run.sid)[0].verdict == VerdictState.REAL  # the store is never written


def test_threshold_slider_cannot_make_an_uncalibrated_verdict(writer: ScoreWriter) -> None:
    run = Run(writer, RANDOM_INFO)
    run.stream()
    run.face(1, VerdictState.UNSURE, 0.495)
    writer.commit()
    at = dashboard()
    at.slider(key=f"threshold:{run.sid}").set_value(0.1).run()
    assert_clean(at)
    assert ":gray-badge[UNSURE]" in card_line(at, 1)


def test_session_picker_browses_a_past_run(writer: ScoreWriter) -> None:
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


def test_stream_selector_and_time_range(writer: ScoreWriter) -> None:
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


def test_database_with_no_runs(writer: ScoreWriter) -> None:
    at = dashboard()
    assert_clean(at)
    assert any("has no runs yet: start the detector with" in i.value for i in at.info)


def test_run_with_no_streams_and_stream_with_no_faces(writer: ScoreWriter) -> None:
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


def test_reconnecting_stream(writer: ScoreWriter) -> None:
    run = Run(writer)
    run.stream("cam", kind="rtsp")
    health = StreamHealth("cam", StreamState.RECONNECTING, 0.0, 0.0, 0, 3, "connection refused by cam.local:554")
    writer.write_health(run.sid, health, time.time())
    writer.commit()
    at = dashboard()
    assert_clean(at)
    assert any("reconnecting" in w.value and "connection refused" in w.value for w in at.warning)


def test_an_overloaded_stream_says_what_it_gave_up(writer: ScoreWriter) -> None:
    run = Run(writer)
    run.stream("cam", kind="rtsp")
    health = StreamHealth(
        "cam",
        StreamState.LIVE,
        10.0,
        9.0,
        2,
        0,
        None,
        frames_thinned=40,
        crops_encoded=55,
        crops_skipped=45,
        overload_share=0.45,
    )
    writer.write_health(run.sid, health, time.time())
    writer.commit()
    at = dashboard()
    assert_clean(at)
    [banner] = [w.value for w in at.warning if "overloaded" in w.value]
    assert "45% of frames thinned or crops skipped in the last 10 s" in banner
    assert "40 frames thinned" in banner and "crops skipped 45%" in banner


def test_a_few_thinned_frames_are_counted_but_are_no_overload(writer: ScoreWriter) -> None:
    run = Run(writer)
    run.stream("cam", kind="rtsp")
    few = StreamHealth("cam", StreamState.LIVE, 30.0, 29.0, 0, 0, None, frames_thinned=4, overload_share=0.01)
    writer.write_health(run.sid, few, time.time())
    writer.commit()
    at = dashboard()
    assert_clean(at)
    assert "overloaded" not in page_text(at).lower() and "4 frames thinned" in page_text(at)


def test_the_overload_banner_follows_the_runs_own_setting(writer: ScoreWriter) -> None:
    sid = writer.start_session(INFO, {"pipeline": {"overload_share": 0.5, "overload_window_s": 30}})
    writer.add_stream(sid, StreamInfo("cam", "rtsp://cam", "rtsp"))
    busy = StreamHealth("cam", StreamState.LIVE, 30.0, 29.0, 0, 0, None, frames_thinned=90, overload_share=0.3)
    writer.write_health(sid, busy, time.time())
    writer.commit()
    at = dashboard()
    assert "overloaded" not in page_text(at).lower()  # 30% is under this run's 50%
    writer.write_health(sid, replace(busy, overload_share=0.6), time.time())
    writer.commit()
    at = dashboard()
    assert_clean(at)
    assert any("60% of frames thinned or crops skipped in the last 30 s" in w.value for w in at.warning)


def test_windows_scored_are_shown_per_face(writer: ScoreWriter) -> None:
    run = Run(writer)
    run.stream("clip")  # 24.5 window scores a second, for ...
    run.face(1, VerdictState.REAL, 0.2)  # ... two faces in view
    run.face(2, VerdictState.REAL, 0.3)
    writer.commit()
    at = dashboard()
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["windows/s per face"] == "12.2" and "fps scored" not in metrics
    assert "2 faces in view" in page_text(at)


def test_detector_not_running_shows_last_data_with_its_age(
    writer: ScoreWriter, monkeypatch: pytest.MonkeyPatch
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
from stream.records import StreamHealth, StreamState
from stream.records import Alert, WindowScore
from stream.records import AnnotatedFrame, FaceUpdate, StreamInfo
from stream.store import SessionInfo, open_writer
w = open_writer(sys.argv[1])
sid = w.start_session(SessionInfo("ck.pt", True, 20, 1, "mean", 0.5, 0.1, "cpu", "torch", ["live.mp4"]))
w.add_stream(sid, StreamInfo("live", "live.mp4", "file"))
w.commit()
jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
print("READY", flush=True)
end, i = time.monotonic() + float(sys.argv[2]), 0
while time.monotonic() < end:
    now = time.time()
    for track in (1, 2, 3):
        w.write_scores([WindowScore(sid, "live", track, i + k, (i + k) / 30, 20, 0.7, now, now) for k in range(10)])
        w.write_face(sid, FaceUpdate("live", track, now, now, 0.0, i / 30, "live", "FAKE", 0.7, i + 10, jpeg))
    w.write_health(sid, StreamHealth("live", StreamState.LIVE, 30.0, 30.0, 0, 0, None), now)
    w.write_frame(sid, AnnotatedFrame("live", now, jpeg))
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
