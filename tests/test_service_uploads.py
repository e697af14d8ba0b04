"""Uploads (stream/uploads.py): a video sent to the service streams to disk under the cap, runs as a stream of kind
`upload` with progress, and ends with the same report as `run_stream.py --report`; bad uploads fail in one line; beside
a live camera it says it is slowed, with its rate and time left, and still finishes. And the loop's priority
(stream/overload.py): beside a camera that leaves time free an upload takes only that time, shown with test doubles
(its guaranteed share beside a busy camera: tests/test_upload_share.py)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import torch
from torch import Tensor

from model.network import FrameOutputs
from model.weights import LoadedModel
from stream.capture.references import SourceSpec
from stream.capture.sources import Source
from stream.config import Settings, with_overrides
from stream.loop.overload import background_fits
from stream.loop.pipeline import Pipeline
from stream.records import Detection, StreamHealth, StreamState
from stream.service.upload_files import UploadFiles
from stream.service.upload_pace import SLOWED, UploadPace, upload_pace
from stream.service.uploads import MB, upload_state
from stream.store import build_report, open_reader
from tests import media
from tests.doubles import BLUE, RED, FakeEngine, RecordingSink, ScriptedFaces, Square, stub_producer
from tests.netns import private_network
from tests.test_service_api import Served, one_line_problem, serving, wait_for

CAP_MB = 0.1
FAST = {"service.upload_max_mb": CAP_MB, "pipeline.health_interval_s": 0.1}
OCTET = {"Content-Type": "application/octet-stream"}  # an upload says what it sends (text and forms are refused)


@pytest.fixture(scope="module", autouse=True)
def private_netns() -> Iterator[None]:
    with private_network():
        yield


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("uploads-media")
    truncated = media.write_video(folder / "cut.mp4", media.render(media.one_face(), 60), faststart=True)
    not_video = folder / "notes.mp4"
    not_video.write_bytes(b"these are not the frames you are looking for\n" * 50)
    return {
        "face": media.write_video(folder / "face clip.mp4", media.render(media.one_face(), 90)),
        "truncated": media.truncate(truncated, 0.6),
        "not_video": not_video,
    }


@pytest.fixture(scope="module")
def served(
    private_netns: None, seed_model: LoadedModel, engine_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    db = tmp_path_factory.mktemp("service-uploads") / "runs" / "deepfake.db"
    with serving(seed_model, db, engine_cache, FAST) as running:
        yield running


def finished(client: httpx.Client, upload_id: str, timeout_s: float = 60) -> dict:
    def ended() -> dict | None:
        upload = client.get(f"/api/uploads/{upload_id}").json()
        return upload if upload["state"] in ("done", "failed") else None

    return wait_for(ended, timeout_s, f"upload {upload_id} to end")


# ---- through the API -------------------------------------------------------------------------------------------
def test_an_upload_reports_progress_then_the_run_report(served: Served, videos: dict[str, Path]) -> None:
    client = served.client
    body = videos["face"].read_bytes()
    accepted = client.post("/api/uploads", headers=OCTET, params={"filename": "../../face clip.mp4"}, content=body)
    assert accepted.status_code == 202, accepted.text
    upload = accepted.json()
    upload_id = upload["upload_id"]
    assert upload["state"] in ("queued", "running") and upload["size_bytes"] == len(body)
    assert upload["file_name"] == "face clip.mp4" and upload["frames_expected"] == 90  # no path from the client
    progress = []
    while (now := client.get(f"/api/uploads/{upload_id}").json())["state"] not in ("done", "failed"):
        progress.append(now["frames_done"])
        time.sleep(0.05)
    assert now["state"] == "done" and now["error"] is None and now["status"] == "ok", now
    assert any(0 < done < 90 for done in progress), progress  # seen part-way
    assert now["frames_done"] == 90

    report = now["report"]
    assert report["schema"] == "deepfake-stream/report/1" and report["session_id"] == served.detector.session_id
    [stream] = report["streams"]
    assert (stream["stream_id"], stream["kind"], stream["source"]) == (upload_id, "upload", "face clip.mp4")
    assert stream["frames_read"] == 90 and stream["verdict"] == "UNSURE" and "UNCALIBRATED" in stream["verdict_rule"]
    assert [f["track_id"] for f in stream["faces"]] == [1] and stream["faces"][0]["frames_scored"] > 50
    with open_reader(served.detector.settings.store.db) as reader:  # the very document --report writes
        assert report == build_report(reader, served.detector.session_id, [upload_id]).as_dict()
    # Kept under a name and suffix of the service's (the client's suffix would be FFmpeg's hint of the format).
    kept = Path(served.detector.settings.store.db).parent / "uploads" / f"{upload_id}.video"
    assert kept.read_bytes() == body
    listed = client.get("/api/uploads").json()
    assert upload_id in [u["upload_id"] for u in listed]
    assert next(u for u in listed if u["upload_id"] == upload_id)["state"] == "done"
    assert client.get(f"/api/streams/{upload_id}").json()["kind"] == "upload"


def test_the_cap_is_reported_and_enforced_up_front_and_while_streaming(served: Served, videos: dict[str, Path]):
    client = served.client
    assert client.get("/api/uploads/limits").json() == {"max_bytes": int(CAP_MB * MB), "max_mb": CAP_MB}
    folder = Path(served.detector.settings.store.db).parent / "uploads"
    before = set(folder.glob("*")) if folder.exists() else set()
    too_big = b"\0" * (int(CAP_MB * MB) + 1)
    declared = client.post("/api/uploads", headers=OCTET, content=too_big)
    assert "larger than the 0.1 MB" in one_line_problem(declared, 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it comes
        for _ in range(4):
            yield b"\0" * 40_000

    streamed = client.post("/api/uploads", headers=OCTET, content=chunks())
    assert "service.upload_max_mb" in one_line_problem(streamed, 413)
    assert "empty" in one_line_problem(client.post("/api/uploads", headers=OCTET, content=b""), 400)
    form = client.post("/api/uploads", files={"file": ("face.mp4", videos["face"].read_bytes(), "video/mp4")})
    assert "not a form" in one_line_problem(form, 415)
    assert (set(folder.glob("*")) if folder.exists() else set()) == before  # nothing refused was kept
    good = client.post("/api/uploads", headers=OCTET, content=videos["face"].read_bytes())  # then a good one
    assert good.status_code == 202 and finished(client, good.json()["upload_id"])["state"] == "done"


def test_unreadable_uploads_fail_in_one_line_and_the_service_keeps_running(
    served: Served, videos: dict[str, Path]
) -> None:
    client = served.client
    rejected = client.post(
        "/api/uploads", headers=OCTET, params={"filename": "notes.mp4"}, content=videos["not_video"].read_bytes()
    )
    assert rejected.status_code == 202, rejected.text
    failed = rejected.json()
    assert failed["state"] == "failed" and "is not a video FFmpeg can read" in failed["error"]
    assert "\n" not in failed["error"]
    assert client.get(f"/api/uploads/{failed['upload_id']}").json()["state"] == "failed"

    cut = client.post(
        "/api/uploads", headers=OCTET, params={"filename": "cut.mp4"}, content=videos["truncated"].read_bytes()
    )
    assert cut.status_code == 202, cut.text
    ended = finished(client, cut.json()["upload_id"])
    assert ended["state"] == "failed" and "truncated" in ended["error"] and "\n" not in ended["error"], ended
    assert ended["status"] == "truncated" and ended["report"]["streams"][0]["status"] == "truncated"
    assert client.get("/healthz").json() == {"ok": True}
    good = client.post("/api/uploads", headers=OCTET, content=videos["face"].read_bytes())
    assert good.status_code == 202 and finished(client, good.json()["upload_id"])["state"] == "done"


def test_an_upload_that_names_other_files_is_refused_before_it_reads_them(
    served: Served, videos: dict[str, Path]
) -> None:
    """An HLS playlist whose segment is a video on the detector's disk, and a concat list naming another upload
    beside it: both fail in one line, and nothing of the files they name is scored."""
    client = served.client
    done = client.post("/api/uploads", headers=OCTET, content=videos["face"].read_bytes()).json()["upload_id"]
    assert finished(client, done)["state"] == "done"
    playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3.0,\n{videos['face']}\n#EXT-X-ENDLIST\n"
    concat = f"ffconcat version 1.0\nfile '{done}.video'\n"  # its id is in GET /api/uploads; the name is fixed
    folder = Path(served.detector.settings.store.db).parent / "uploads"
    for file_name, body, words in (("list.m3u8", playlist, "is a playlist"), ("list.txt", concat, "MP4/MOV")):
        answer = client.post("/api/uploads", headers=OCTET, params={"filename": file_name}, content=body.encode())
        assert answer.status_code == 202, answer.text
        failed = answer.json()
        assert failed["state"] == "failed" and words in failed["error"] and "\n" not in failed["error"], failed
        assert client.get(f"/api/streams/{failed['upload_id']}").status_code == 404  # never a stream: nothing scored
        assert not list(folder.glob(f"{failed['upload_id']}*"))  # and not kept
    with open_reader(served.detector.settings.store.db) as reader:
        kinds = [(row.stream_id, row.kind) for row in reader.streams(served.detector.session_id)]
    assert [sid for sid, kind in kinds if kind == "upload"].count(done) == 1


def test_a_still_image_upload_fails_by_its_content_and_is_deleted(served: Served, tmp_path: Path) -> None:
    client = served.client
    _, png = cv2.imencode(".png", media.one_face()(0))
    one_frame = media.write_video(tmp_path / "one.mp4", [media.one_face()(0)]).read_bytes()
    folder = Path(served.detector.settings.store.db).parent / "uploads"
    for file_name, body, what in (("face.mp4", png.tobytes(), "(PNG)"), ("one.mp4", one_frame, "(h264)")):
        failed = client.post("/api/uploads", headers=OCTET, params={"filename": file_name}, content=body).json()
        assert failed["state"] == "failed", failed
        assert f"is a still image {what}" in failed["error"] and "still images are not supported" in failed["error"]
        assert client.get(f"/api/uploads/{failed['upload_id']}").json()["state"] == "failed"
        assert not list(folder.glob(f"{failed['upload_id']}*"))


def test_old_uploads_are_deleted_after_an_upload_and_each_deletion_is_logged(
    served: Served, videos: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """The retention defaults to store.retention_days (30): a file of an earlier run 40 days old goes after the
    next upload; a fresh one stays."""
    folder = Path(served.detector.settings.store.db).parent / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    old, fresh, foreign = folder / "upload-0000aaaa.video", folder / "upload-0000bbbb.mp4", folder / "mine.mp4"
    for path in (old, fresh, foreign):
        path.write_bytes(b"x" * 1000)
    long_ago = time.time() - 40 * 86400
    for path in (old, foreign):
        os.utime(path, (long_ago, long_ago))
    with caplog.at_level(logging.INFO, logger="deepfake_stream"):
        body = videos["face"].read_bytes()
        upload_id = served.client.post("/api/uploads", headers=OCTET, content=body).json()["upload_id"]
    assert not old.exists() and fresh.exists() and foreign.exists()  # only what the service wrote is deleted
    assert (folder / f"{upload_id}.video").exists()
    [line] = [r.getMessage() for r in caplog.records if "uploads: deleted" in r.getMessage()]
    assert "upload-0000aaaa.video" in line and "service.upload_retention_days" in line
    assert finished(served.client, upload_id)["state"] == "done"


@pytest.mark.fast
def test_the_quota_deletes_the_oldest_first_and_never_one_in_use(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = time.time()
    paths = [tmp_path / f"upload-0000000{i}.video" for i in range(4)]
    for age, path in enumerate(reversed(paths)):  # paths[0] is the oldest
        path.write_bytes(b"x" * MB)
        os.utime(path, (now - 3600 * (age + 1), now - 3600 * (age + 1)))
    files = UploadFiles(tmp_path, retention_days=None, quota_mb=2.5)
    with caplog.at_level(logging.INFO, logger="deepfake_stream"):
        deleted = files.prune(keep=[paths[0]], now=now)  # the oldest is being scored: the next ones go
    assert deleted == [paths[1], paths[2]] and paths[0].exists() and paths[3].exists()
    lines = [r.getMessage() for r in caplog.records if "uploads: deleted" in r.getMessage()]
    assert len(lines) == 2 and all("service.upload_quota_mb (2.5)" in line for line in lines)
    assert UploadFiles(tmp_path, retention_days=1, quota_mb=None).prune(now=now) == []  # both are younger than a day
    assert UploadFiles(tmp_path, retention_days=0.001, quota_mb=None).prune(now=now) == [paths[0], paths[3]]


def test_an_upload_beside_a_live_camera_says_it_is_slowed_and_still_finishes(
    served: Served, videos: dict[str, Path]
) -> None:
    client = served.client
    added = client.post("/api/streams", json={"source": "demo", "name": "beside"})
    assert added.status_code in (201, 202), added.text
    wait_for(lambda: client.get("/api/streams/beside").json()["fps_in"] > 0, 30, "the demo camera to run")
    try:
        upload_id = client.post("/api/uploads", headers=OCTET, content=videos["face"].read_bytes()).json()["upload_id"]
        seen: list[dict] = []
        while (now := client.get(f"/api/uploads/{upload_id}").json())["state"] not in ("done", "failed"):
            seen.append(now)
            time.sleep(0.1)
        assert now["state"] == "done", now  # live cameras have priority, not all of the loop
        running = [u for u in seen if u["state"] == "running"]
        assert running and all(u["note"] == SLOWED for u in running), running
        paced = [u for u in running if u["rate_fps"]]
        assert paced, running  # a rate once the loop has timed some of its frames, and the time left at it
        for u in paced:
            assert u["eta_s"] == pytest.approx((90 - u["frames_done"]) / u["rate_fps"], rel=0.05, abs=0.1), u
        assert (now["note"], now["rate_fps"], now["eta_s"]) == (None, None, None)  # said only while it runs
        camera = client.get("/api/streams/beside").json()
        assert camera["state"] == "live" and camera["fps_in"] > 0  # the camera kept going beside it
    finally:
        client.delete("/api/streams/beside")
    # With no live camera, an upload is not slowed (and says nothing of it).
    alone = client.post("/api/uploads", headers=OCTET, content=videos["face"].read_bytes()).json()["upload_id"]
    notes = set()
    while (now := client.get(f"/api/uploads/{alone}").json())["state"] not in ("done", "failed"):
        notes.add(now["note"])
        time.sleep(0.05)
    assert now["state"] == "done" and notes <= {None}, notes


def test_an_uploads_pace_is_its_rate_and_the_time_its_frames_left_take() -> None:
    running = StreamHealth("u", StreamState.LIVE, 12.5, 0.0, 0, 0, None, frames_read=40, frames_expected=90)
    assert upload_pace(running, 40, 90, beside_live=True) == UploadPace(SLOWED, 12.5, 4.0)
    assert upload_pace(running, 40, 90, beside_live=False) == UploadPace(None, 12.5, 4.0)
    assert upload_pace(running, 40, None, beside_live=True) == UploadPace(SLOWED, 12.5, None)  # length unknown
    waiting = StreamHealth("u", StreamState.STARTING, 0.0, 0.0, 0, 0, None)
    assert upload_pace(waiting, 0, 90, beside_live=True) == UploadPace(SLOWED, 0.0, None)  # no rate yet
    assert upload_pace(None, 0, 90, beside_live=True) == UploadPace()  # queued, or ended
    assert upload_pace(StreamHealth("u", StreamState.ENDED, 30.0, 0.0, 0, 0, None), 90, 90, True) == UploadPace()


def test_uploads_of_an_earlier_session_are_listed_with_their_reports(
    seed_model: LoadedModel, engine_cache: Path, tmp_path: Path, videos: dict[str, Path]
) -> None:
    db = tmp_path / "runs" / "deepfake.db"
    with serving(seed_model, db, engine_cache, FAST) as first:
        upload_id = first.client.post("/api/uploads", headers=OCTET, content=videos["face"].read_bytes()).json()[
            "upload_id"
        ]
        assert finished(first.client, upload_id)["state"] == "done"
        first_session = first.detector.session_id
    with serving(seed_model, db, engine_cache, FAST) as second:
        [listed] = second.client.get("/api/uploads").json()
        assert (listed["upload_id"], listed["session_id"], listed["state"]) == (upload_id, first_session, "done")
        again = second.client.get(f"/api/uploads/{upload_id}").json()
        assert again["report"]["session_id"] == first_session and again["frames_done"] == 90
        assert again["report"]["streams"][0]["faces"][0]["frames_scored"] > 50


def test_an_upload_state_follows_the_store_once_it_has_ended() -> None:
    def health(state: StreamState, error: str | None = None) -> StreamHealth:
        return StreamHealth("u", state, 0.0, 0.0, 0, 0, error)

    live, ended = health(StreamState.LIVE), health(StreamState.ENDED)
    assert upload_state(None, None, True, None) == ("queued", None)
    assert upload_state(live, ended, True, None) == ("running", None)  # published, not yet committed
    assert upload_state(ended, ended, True, None) == ("done", None)
    assert upload_state(health(StreamState.TRUNCATED, "cut short"), None, True, None) == ("failed", "cut short")
    assert upload_state(None, None, True, "not a video") == ("failed", "not a video")
    assert upload_state(live, None, False, None)[0] == "failed"  # an earlier run died before its end
    assert "interrupted" in (upload_state(health(StreamState.INTERRUPTED), None, False, None)[1] or "")


# ---- the loop's priority, with test doubles ------------------------------------------------------------------------
CROP_S = 0.005  # the encoder's cost per crop
CAMERA_INTERVAL_S = 0.050  # a 20 fps camera
UPLOAD_DETECT_S = 0.065  # finding the faces of an upload frame takes longer than a camera's frame interval
LIVE_SPEC = SourceSpec("webcam", "stub", live=True, display="stub")


class ThrottledEngine(FakeEngine):
    def encode(self, batch: Tensor) -> FrameOutputs:
        time.sleep(CROP_S * batch.shape[0])
        return super().encode(batch)


class SlowFaces(ScriptedFaces):
    def detect(self, image_bgr: np.ndarray, timestamp_ms: int) -> list[Detection]:
        time.sleep(UPLOAD_DETECT_S)
        return super().detect(image_bgr, timestamp_ms)


class Detectors:
    """The camera's detector is quick, the second stream's slow: one per stream, in the order they start."""

    def __init__(self) -> None:
        self.made: list[ScriptedFaces] = []

    def __call__(self) -> ScriptedFaces:
        self.made.append(SlowFaces() if self.made else ScriptedFaces())
        return self.made[-1]


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """The fake engine's torch ops on one thread: a 2-thread pool on a busy 2-core machine waits a scheduler slice
    for its other thread now and then (70 ms stalls), and the doubles must cost what they say."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_beside(loaded: LoadedModel, beside: str | None, seconds: float = 3.0) -> tuple[int, int, StreamHealth]:
    """A 20 fps camera, alone or beside a long video of kind `beside` (`upload` or `file`): frames the loop
    processed of each, and the camera's final health."""
    settings: Settings = with_overrides(
        Settings(),
        {
            "faces.mode": "full_frame",
            "model.window": 10,
            "pipeline.status_interval_s": 1e9,
            "clips.enabled": False,
            # The priority rule alone: the guaranteed share (tests/test_upload_share.py) would take camera frames
            # whenever load from elsewhere keeps this loop busy.
            "pipeline.upload_share": 0.01,
        },
        "test",
    )
    detectors = Detectors()
    pipeline = Pipeline(ThrottledEngine(), loaded, "test-session", settings, [RecordingSink()], detectors)
    camera = stub_producer(lambda i: [Square(RED, 20 + i % 5, 30)], burst=0, interval_s=CAMERA_INTERVAL_S)
    sources = [Source("cam", LIVE_SPEC, settings.sources, producer=camera)]
    if beside is not None:
        spec = SourceSpec(beside, "stub", live=False, display="stub")
        sources.append(Source("clip", spec, settings.sources, producer=stub_producer(lambda i: [Square(BLUE, 60, 40)])))
    for source in sources:
        pipeline.add_source(source)
    pipeline.run(duration_s=seconds)
    for source in sources:
        source.join(2)
    health = {h.stream_id: h for h in pipeline.health()}
    calls = [d.calls for d in detectors.made]
    return calls[0], (calls[1] if len(calls) > 1 else 0), health["cam"]


def test_an_upload_gets_only_the_time_a_live_camera_leaves(seed_model: LoadedModel, one_torch_thread: None) -> None:
    alone, _, _ = run_beside(seed_model, None)
    camera, upload, health = run_beside(seed_model, "upload")
    assert alone >= 0.8 * 3.0 / CAMERA_INTERVAL_S  # the camera alone keeps its rate
    assert camera >= 0.92 * alone, (camera, alone)  # an upload beside it takes nothing from it ...
    assert health.frames_dropped <= 0.05 * health.frames_read, health
    assert upload >= 0.25 * camera, (upload, camera)  # ... and still progresses in the time left
    # Without the priority (a plain file beside it) the same work does slow the camera: the test can fail.
    slowed, _, _ = run_beside(seed_model, "file")
    assert slowed <= 0.85 * alone, (slowed, alone)


def test_an_upload_alone_runs_at_full_speed_and_is_never_skipped(seed_model: LoadedModel) -> None:
    settings = with_overrides(Settings(), {"faces.mode": "full_frame", "model.window": 10, "clips.enabled": False})
    sink = RecordingSink()
    pipeline = Pipeline(FakeEngine(), seed_model, "test-session", settings, [sink], Detectors())
    spec = SourceSpec("upload", "stub", live=False, display="stub")
    source = Source("clip", spec, settings.sources, producer=stub_producer(lambda i: [Square(BLUE, 60, 40)], 40))
    pipeline.add_source(source)
    began = time.monotonic()
    pipeline.run(duration_s=30)
    assert time.monotonic() - began < 10
    [health] = pipeline.health()
    assert (health.state, health.frames_read, health.crops_encoded, health.crops_skipped) == ("ended", 40, 40, 0)


def test_background_fits_only_between_a_cameras_frames() -> None:
    # A camera whose last frame came at t=0 ms, one every 50 ms; a live iteration takes 10 ms, an upload one 80.
    cameras = [(0.0, 0.050)]
    assert background_fits(0.005, 0.080, 0.010, cameras)  # the frame at 50 waits until 85, is done at 95 < 100
    assert not background_fits(0.030, 0.080, 0.010, cameras)  # ... from 30 it would be done at 120: one dropped
    assert background_fits(0.055, 0.080, 0.010, cameras)  # the frame at 100 is done at 145 < 150
    assert not background_fits(0.005, 0.010, 0.060, cameras)  # the loop is behind the camera already
    assert background_fits(0.030, None, 0.010, cameras) and background_fits(0.030, 0.080, None, [])  # not measured
    assert background_fits(5.0, 0.500, 0.010, cameras)  # a camera silent for seconds holds nothing back
