"""The dashboard as the control room, in `AppTest` against a real detector service started here
(tests/test_service_api.py `serving`, with a token): upload a test video and get its report, add a
password-protected RTSP camera and stop it, a source the detector cannot open, the picker between two running
detectors, what the controls say with no service, and the password gate (nothing of the store before the password).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import access, control, data, detectors, upload_data
from dashboard.cameras_view import source_reference
from dashboard.launch import DashboardError, free_port, start_dashboard
from model.labels import UNCALIBRATED_WARNING
from model.weights import LoadedModel
from stream.records import ClusterCamera, StreamHealth, StreamInfo, StreamState, VerdictState
from stream.store import build_report, open_reader, open_writer
from tests import media
from tests.dashboard_store import APP, INFO, ROOT, Run
from tests.netns import RtspServer, private_network
from tests.test_service_api import Served, serving, wait_for

TOKEN = "control-room-token-5d1e"
FAST = {"pipeline.health_interval_s": 0.2, "sources.open_timeout_s": 5, "service.upload_max_mb": 5}
CAMERA_PASSWORD = "s3cr3t-pw"


@pytest.fixture(scope="module", autouse=True)
def private_netns() -> Iterator[None]:
    with private_network():
        yield


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("control-room") / "runs" / "deepfake.db"


def with_media(camera_video: Path) -> dict[str, object]:
    """FAST with the camera video's folder as the service's media folder: files come only from there (on purpose:
    the source policy takes no file through the API without one)."""
    return {**FAST, "service.media_dir": str(camera_video.parent)}


@pytest.fixture(scope="module")
def served(
    private_netns: None, seed_model: LoadedModel, engine_cache: Path, store: Path, camera_video: Path
) -> Iterator[Served]:
    with serving(seed_model, store, engine_cache, with_media(camera_video), token=TOKEN) as running:
        yield running


@pytest.fixture
def env(store: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The page reads this store and has the service's token in its environment, as launch.py gives it."""
    monkeypatch.setenv(data.DB_ENV, str(store))
    monkeypatch.setenv(control.TOKEN_ENV, TOKEN)
    monkeypatch.delenv(access.PASSWORD_ENV, raising=False)
    return store


@pytest.fixture(scope="module")
def camera_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 s of one face, H.264 without B-frames and a key frame every second, as a camera sends."""
    path = tmp_path_factory.mktemp("control-camera") / "face.mp4"
    scene = media.one_face()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30, options={"g": "30", "bf": "0"})
        stream.width, stream.height, stream.pix_fmt = media.WIDTH, media.HEIGHT, "yuv420p"
        for index in range(150):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(scene(index), format="bgr24")))
        container.mux(stream.encode())
    return path


def open_page(page: str) -> AppTest:
    """A fresh browser session opened at `?page=PAGE`."""
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["page"] = page
    return at.run()


def texts(at: AppTest) -> str:
    found = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "title", "subheader"):
        for element in getattr(at, kind):
            found.append(str(element.value))
    return "\n".join(found)


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def one_line(text: str) -> str:
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


# ---- upload a video: progress, then the report ----------------------------------------------------------------------
def test_upload_a_video_and_get_its_report(served: Served, env: Path) -> None:
    video = media.write_video(env.parent / "face clip.mp4", media.render(media.one_face(), 90))
    at = open_page("analyse")
    assert_clean(at)
    assert "Up to **5 MB** per video" in texts(at)  # the service's cap, before uploading
    uploader = at.get("file_uploader")[0]
    assert not uploader.proto.disabled
    uploader.set_value(("face clip.mp4", video.read_bytes(), "video/mp4"))
    at.run()
    assert_clean(at)
    opened = at.session_state["upload:open"]
    session_id, upload_id = opened.split("/")
    assert session_id == served.detector.session_id and upload_id.startswith("upload-")
    # Past uploads says what the service says of it now (not `failed` before its first health row).
    [shown] = at.dataframe[0].value.loc[at.dataframe[0].value["upload"] == upload_id, "status"]
    assert shown == "running" or shown.startswith("queued"), shown

    progress = [bar.proto.text for bar in at.get("progress")]

    def report_shown() -> bool:
        at.run()
        assert_clean(at)
        progress.extend(bar.proto.text for bar in at.get("progress"))
        return "overall verdict for **face clip.mp4**" in texts(at)

    wait_for(report_shown, 90, "the upload's report on the page")
    assert progress and "face clip.mp4" in progress[0] and "of 90 frames scored" in progress[0], progress
    assert not at.get("progress")  # the bar is gone once the report is there
    with open_reader(env) as reader:
        report = build_report(reader, session_id, [upload_id])
    [stream] = report.streams
    assert stream.status == "ok" and stream.frames_read == 90 and stream.faces
    page = texts(at)
    assert ":gray-badge[UNSURE] overall verdict for **face clip.mp4**" in page  # uncalibrated: UNSURE
    assert stream.verdict_rule in page
    assert any(UNCALIBRATED_WARNING in e.value for e in at.error)
    for face in stream.faces:
        assert f"**face #{face.track_id}** · :gray-badge[UNSURE]" in page
        assert f"mean p(fake) **{face.mean_p_fake:.3f}** · max p(fake) **{face.max_p_fake:.3f}**" in page
    assert len(at.get("vega_lite_chart")) == len(stream.faces)  # a timeline per face
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download faces (CSV)" in labels and "Download report (JSON)" in labels
    # The same file is not sent again when the page reruns.
    at.run()
    assert len([u for u in served.client.get("/api/uploads").json() if u["file_name"] == "face clip.mp4"]) == 1

    # A new browser session lists it among the past uploads and reopens it.
    again = open_page("analyse")
    frame = again.dataframe[0].value
    assert upload_id in list(frame["upload"])
    assert frame.loc[frame["upload"] == upload_id, "verdict"].item() == "UNSURE"
    again.selectbox(key="upload:pick").set_value(opened).run()
    assert_clean(again)
    assert "overall verdict for **face clip.mp4**" in texts(again)


def test_past_uploads_say_what_each_upload_is_now(writer, db: Path) -> None:
    run = Run(writer)
    writer.add_stream(run.sid, StreamInfo("upload-1", "new.mp4", "upload"))  # just started: no health row yet
    writer.commit()
    with open_reader(db) as reader:
        [upload] = upload_data.past_uploads(reader)
    key = f"{run.sid}/upload-1"
    assert upload_data.upload_status(upload, {}) == "unfinished"  # no detector to ask: not called `failed`
    assert upload_data.upload_status(upload, {key: {"state": "running"}}) == "running"
    queued = {"upload_id": "upload-2", "session_id": run.sid, "file_name": "next.mp4", "state": "queued"}
    live = {key: {"state": "running"}, f"{run.sid}/upload-2": {**queued, "queue_position": 1}}
    frame = upload_data.past_frame([upload], live)
    assert list(frame["status"]) == ["queued (1 ahead)", "running"]  # the one not started yet is listed too
    assert upload_data.service_state({"state": "paused"}) == "paused"  # a state this page does not know, as it is


def test_an_upload_that_is_not_a_video_is_said_in_one_line(served: Served, env: Path) -> None:
    at = open_page("analyse")
    at.get("file_uploader")[0].set_value(("notes.mp4", b"not a video at all\n" * 100, "video/mp4"))
    at.run()
    assert_clean(at)
    wait_for(lambda: at.run() and any("notes.mp4:" in e.value for e in at.error), 30, "the failure on the page")
    line = next(e.value for e in at.error if "notes.mp4:" in e.value)
    one_line(line)
    at.get("file_uploader")[0].set_value(("big.mp4", b"\0" * (5 * 2**20 + 1), "video/mp4"))
    at.run()
    at.run()  # said again on a rerun, and not sent
    assert "big.mp4 is 5.0 MB: over the 5 MB an upload may send" in [e.value for e in at.error]
    assert "big.mp4" not in [u["file_name"] for u in served.client.get("/api/uploads").json()]


# ---- cameras -----------------------------------------------------------------------------------------------------
def stream_state(db: Path, session_id: str, stream_id: str) -> str | None:
    with open_reader(db) as reader:
        row = next((s for s in reader.streams(session_id) if s.stream_id == stream_id), None)
    return None if row is None or row.health is None else str(row.health.state)


def test_add_a_password_protected_camera_then_stop_it(served: Served, env: Path, camera_video: Path) -> None:
    with RtspServer(video=camera_video, auth=f"viewer:{CAMERA_PASSWORD}") as server:
        assert server.url is not None
        at = open_page("cameras")
        assert_clean(at)
        at.radio(key="camera:kind").set_value("rtsp").run()
        at.text_input(key="camera:url").input(server.url)
        at.text_input(key="camera:user").input("viewer")
        at.text_input(key="camera:password").input(CAMERA_PASSWORD)
        at.text_input(key="camera:name").input("door")
        at.button(key="camera:submit").click().run()
        assert_clean(at)
        assert any("added **door**" in s.value for s in at.success), texts(at)
        sid = served.detector.session_id
        wait_for(lambda: stream_state(env, sid, "door") == "live", 30, "the camera to go live")
        at.run()
        page = texts(at)
        assert "**door** · rtsp" in page and ":green-badge[live]" in page
        assert CAMERA_PASSWORD not in page and "viewer:" not in page  # never displayed

        at.button(key="stop:door").click().run()
        assert_clean(at)
        assert stream_state(env, sid, "door") == "ended"
        assert any("stopped door: ended" in s.value for s in at.success), texts(at)
        assert "stop:door" not in [b.key for b in at.button]
        assert ":gray-badge[ended]" in texts(at)


def test_a_source_the_detector_cannot_open_is_one_line(served: Served, env: Path) -> None:
    at = open_page("cameras")
    at.radio(key="camera:kind").set_value("file").run()
    at.text_input(key="camera:path").input(str(env.parent / "missing.mp4"))
    at.button(key="camera:submit").click().run()
    assert_clean(at)
    [error] = [e.value for e in at.error]
    assert one_line(error).startswith("not added: ") and "inside its media folder (service.media_dir)" in error
    # A camera that refuses: the service accepts it (202, starting); the page follows it until it fails.
    at.radio(key="camera:kind").set_value("rtsp").run()
    at.text_input(key="camera:url").input("rtsp://127.0.0.1:1/cam")
    at.button(key="camera:submit").click().run()
    assert_clean(at)
    [error] = [e.value for e in at.error]
    assert one_line(error).startswith("not added: ") and "refused" in error, error
    at.text_input(key="camera:url").input("http://cam/s")
    at.button(key="camera:submit").click().run()
    assert "an RTSP camera needs a URL" in one_line(at.error[0].value)


def test_the_page_offers_only_what_the_source_policy_allows(served: Served, env: Path, camera_video: Path) -> None:
    at = open_page("cameras")
    assert_clean(at)
    assert at.radio(key="camera:kind").options == ["RTSP camera", "Video file"]
    said = texts(at)
    assert "Not offered here: Webcam: off in this detector's config (service.api_sources leaves out webcam)" in said
    assert "Screen region: off" in said
    at.radio(key="camera:kind").set_value("file").run()
    assert str(camera_video.parent) in at.text_input(key="camera:path").label  # where files may come from


def test_this_computers_camera_links_to_the_publish_page(served: Served, env: Path) -> None:
    at = open_page("camera")
    assert_clean(at)
    [link] = at.get("link_button")
    assert link.proto.url == served.url
    assert TOKEN not in str(at._tree)  # the token never goes to the browser


def test_source_references_from_the_form() -> None:
    assert source_reference("rtsp", " rtsp://cam.local/s ", "a b", "p@ss:") == "rtsp://a%20b:p%40ss%3A@cam.local/s"
    assert source_reference("webcam", "/dev/video2") == "/dev/video2"
    assert source_reference("screen", "") == "screen"
    assert source_reference("screen", "0, 0, 640, 480") == "screen:0,0,640,480"
    for kind, text in [("rtsp", "http://cam/s"), ("webcam", "cam"), ("screen", "1,2"), ("file", " ")]:
        with pytest.raises(ValueError):
            source_reference(kind, text)
    assert control.redact("cannot open rtsp://u:pw@cam/x: 401") == "cannot open rtsp://***@cam/x: 401"


# ---- which detector --------------------------------------------------------------------------------------------
def test_a_picker_when_two_detectors_serve_one_store(
    served: Served, env: Path, seed_model: LoadedModel, engine_cache: Path, camera_video: Path
) -> None:
    with serving(seed_model, env, engine_cache, with_media(camera_video), token=TOKEN) as second:
        at = open_page("cameras")
        assert_clean(at)
        picker = at.selectbox(key="detector")
        assert picker.options and len(picker.options) == 2
        assert picker.value == second.url  # the newest by default
        picker.set_value(served.url).run()
        at.radio(key="camera:kind").set_value("file").run()
        at.text_input(key="camera:path").input(str(camera_video))
        at.text_input(key="camera:name").input("to-the-first")
        at.button(key="camera:submit").click().run()
        assert_clean(at)
        with open_reader(env) as reader:
            assert "to-the-first" in [s.stream_id for s in reader.streams(served.detector.session_id)]
            assert "to-the-first" not in [s.stream_id for s in reader.streams(second.detector.session_id)]
    # The second has stopped (and ended its run): one detector again, no picker.
    at = open_page("cameras")
    assert not [s for s in at.selectbox if s.key == "detector"]
    assert f"the detector at {served.url}" in texts(at)


# ---- no service -------------------------------------------------------------------------------------------------
def test_without_a_service_the_controls_say_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "runs" / "deepfake.db"
    monkeypatch.setenv(data.DB_ENV, str(db))
    monkeypatch.delenv(access.PASSWORD_ENV, raising=False)
    at = open_page("analyse")
    assert "No score store at" in texts(at)
    with open_writer(db) as writer:
        run = Run(writer)  # a run without --serve, still writing, with an upload of an earlier service
        writer.add_stream(run.sid, StreamInfo("clip", "clip.mp4", "upload"))
        writer.write_health(run.sid, StreamHealth("clip", StreamState.ENDED, 30.0, 24.5, 40, 0, None), time.time())
        run.face(1, VerdictState.REAL, 0.2)
        writer.commit()
        at = open_page("cameras")
        assert "started without `--serve`" in one_line(at.info[0].value)
        # A detector that recorded its service, then was killed (its run never ended): its port answers nothing.
        dead = writer.start_session(INFO)
        writer.set_service_url(dead, f"http://127.0.0.1:{free_port()}/")
        writer.commit()
    for page in ("analyse", "cameras", "camera"):
        at = open_page(page)
        assert_clean(at)
        assert "does not answer" in one_line(at.info[0].value), page
    at = open_page("analyse")
    assert at.get("file_uploader")[0].proto.disabled
    assert "clip" in list(at.dataframe[0].value["upload"])  # past uploads still listed and readable
    at.selectbox(key="upload:pick").set_value(f"{run.sid}/clip").run()
    assert_clean(at)
    assert ":green-badge[REAL] overall verdict for **clip.mp4**" in texts(at)
    assert "**face #1** · :green-badge[REAL]" in texts(at)
    watch = open_page("watch")  # browsing runs works as before
    assert_clean(watch)
    assert watch.selectbox(key="session")


def test_a_service_that_has_ended_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed_model: LoadedModel, engine_cache: Path
) -> None:
    db = tmp_path / "runs" / "deepfake.db"
    monkeypatch.setenv(data.DB_ENV, str(db))
    monkeypatch.delenv(access.PASSWORD_ENV, raising=False)
    with serving(seed_model, db, engine_cache, FAST) as running:
        at = open_page("cameras")
        assert f"the detector at {running.url}" in texts(at)
    at.run()  # the same page, after the detector stopped
    assert_clean(at)
    assert "has ended" in one_line(at.info[0].value)
    with open_reader(db) as reader:
        found = detectors.find_detectors(reader, db, lambda url: control.Control(url).alive())
    assert not found.running


# ---- the password --------------------------------------------------------------------------------------------------
def test_the_password_gate_shows_nothing_of_the_store(writer, db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run(writer)
    run.stream("lobby-camera", kind="rtsp")
    run.face(1, VerdictState.FAKE, 0.9, stream_id="lobby-camera")
    writer.commit()
    monkeypatch.setenv(access.PASSWORD_ENV, "correct horse")
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert_clean(at)

    def nothing_of_the_store() -> None:
        shown = texts(at) + "\n".join(str(s.options) for s in at.selectbox)
        for secret in ("lobby-camera", run.sid, INFO.checkpoint, str(db)):
            assert secret not in shown
        assert not at.sidebar.children or not list(at.sidebar.selectbox)

    nothing_of_the_store()
    at.text_input(key="gate:password").input("correct horse ")
    at.button[0].click().run()
    assert "wrong password" in at.error[0].value
    nothing_of_the_store()
    at.text_input(key="gate:password").input("correct horse")
    at.button[0].click().run()
    assert_clean(at)
    assert "**lobby-camera** · rtsp" in texts(at)
    assert access.password_matches("a", "a") and not access.password_matches("a", "b")


def test_off_loopback_the_dashboard_needs_a_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(access.PASSWORD_ENV, raising=False)
    with pytest.raises(DashboardError, match="without a password"):
        start_dashboard(tmp_path / "deepfake.db", host="0.0.0.0")
    assert access.address_problem("127.0.0.1", os.environ) is None
    assert access.address_problem("::1", {}) is None
    assert access.address_problem("10.0.0.5", {access.PASSWORD_ENV: "x"}) is None
    environ = {k: v for k, v in os.environ.items() if k != access.PASSWORD_ENV}
    done = subprocess.run(
        [sys.executable, "run_stream.py", "--dashboard-only", "--dashboard-address", "0.0.0.0"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert one_line(done.stderr.strip()).startswith("error: refusing to serve the dashboard on 0.0.0.0")


def test_the_cameras_page_shows_where_a_cluster_runs_each_camera(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "runs" / "deepfake.db"
    monkeypatch.setenv(data.DB_ENV, str(db))
    monkeypatch.delenv(access.PASSWORD_ENV, raising=False)
    now = time.time()
    cameras = [
        ClusterCamera(
            "c1",
            "door",
            "rtsp://***@door/cam",
            "detector-0",
            "node-a",
            "s-1",
            "reconnecting",
            now - 60,
            now,
            "rtsp://admin:secret@door/cam timed out",  # a detail that still carries a password is redacted
        ),
        ClusterCamera("c1", "hall", "hall.mp4", None, None, None, "unplaced", now - 5, now, "no detector has room"),
    ]
    with open_writer(db) as writer:
        Run(writer)
        writer.write_cluster_status("c1", cameras)
        writer.commit()
    at = open_page("cameras")
    assert_clean(at)
    assert "Cluster" in texts(at) and "cluster `c1`" in texts(at)
    table = at.dataframe[0].value
    assert list(table["camera"]) == ["door", "hall"]
    assert list(table["state"]) == ["reconnecting", "unplaced"] and list(table["node"]) == ["node-a", ""]
    assert list(table["detail"]) == ["rtsp://***@door/cam timed out", "no detector has room"]
