"""An upload's guaranteed share of the loop (stream/loop/upload_share.py): beside a live camera that keeps the loop
busy, an upload still gets `pipeline.upload_share` of the loop's time and finishes, the camera keeps the rest, and the
frames the camera left out for it are thinned, not overload. First the bookkeeping, then the loop with test doubles,
a paced live source and a real video file as the upload."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from model.weights import LoadedModel
from stream.capture.references import SourceSpec
from stream.capture.sources import Source
from stream.config import ConfigError, Settings, with_overrides
from stream.loop.pipeline import Pipeline
from stream.loop.upload_share import IDLE_S, UploadShare, yielded_of
from stream.records import Detection, StreamState
from tests import media
from tests.doubles import RED, FakeEngine, RecordingSink, ScriptedFaces, Square, stub_producer

pytestmark = pytest.mark.fast  # make test-fast

SHARE = 0.4
CAMERA_INTERVAL_S = 0.040  # a 25 fps camera ...
CAMERA_DETECT_S = 0.045  # ... whose faces take longer to find than its frame interval: the loop is never idle
UPLOAD_DETECT_S = 0.005
UPLOAD_FRAMES = 150


# ---- the bookkeeping ---------------------------------------------------------------------------------------------
def test_an_upload_is_owed_iterations_while_its_part_of_the_loop_is_below_the_share() -> None:
    share = UploadShare(SHARE, window_s=2.0)
    assert not share.owed(now=0.0)  # nothing measured, no live iteration: uploads run as they would
    for i in range(10):  # live iterations of 50 ms, back to back
        share.took(True, 0.050, now=0.05 * (i + 1))
    assert share.measured(now=0.5) == 0.0 and share.owed(now=0.5)
    share.took(False, 0.400, now=0.9)  # one upload iteration: 0.4 of 0.9 s
    assert share.measured(now=0.9) == pytest.approx(0.4 / 0.9) and not share.owed(now=0.9)
    share.took(True, 0.050, now=0.95)
    assert not share.owed(now=0.95)  # 0.4 of 0.95 s
    share.took(True, 0.100, now=1.05)
    assert share.owed(now=1.05)  # 0.4 of 1.05 s: below the share again
    assert share.background_s_since(0.6) == pytest.approx(0.4) and share.background_s_since(0.95) == 0.0
    # Iterations older than the window are forgotten: 2 s later only the last two live ones are left.
    share.took(True, 0.050, now=2.95)
    assert share.measured(now=2.95) == 0.0


def test_the_window_starts_afresh_when_an_upload_begins_after_a_pause() -> None:
    share = UploadShare(SHARE, window_s=10.0)
    for i in range(40):  # 2 s of live iterations with no upload waiting
        share.took(True, 0.050, now=0.05 * (i + 1))
    assert not share.owed(now=2.0)  # an upload arrives: the live time before it is forgotten (it owes no burst)
    share.took(True, 0.050, now=2.05)
    assert share.owed(now=2.05)  # 0%: one iteration of its own ...
    share.took(False, 0.050, now=2.10)
    assert not share.owed(now=2.10)  # ... 50%: the live iteration its share leaves ...
    share.took(True, 0.050, now=2.15)
    assert share.owed(now=2.15)  # ... 33%: its turn again
    assert not share.owed(now=2.15 + IDLE_S + 0.01)  # a new upload after a pause: nothing measured yet


def test_frames_left_out_for_an_upload_are_counted_apart() -> None:
    assert yielded_of(thinned=5, yielded_s=0.120, interval_s=0.040) == pytest.approx(3.0)
    assert yielded_of(thinned=5, yielded_s=0.050, interval_s=0.040) == pytest.approx(1.25)  # not rounded each time
    assert yielded_of(thinned=2, yielded_s=0.300, interval_s=0.040) == 2.0  # never more than were thinned
    assert yielded_of(thinned=5, yielded_s=0.0, interval_s=0.040) == 0.0
    assert yielded_of(thinned=5, yielded_s=0.1, interval_s=None) == 0.0


def test_the_share_is_a_fraction_below_one() -> None:
    assert with_overrides(Settings(), {"pipeline.upload_share": 0.5}, "test").pipeline.upload_share == 0.5
    for bad in (0, 1, 1.5, -0.2):
        with pytest.raises(ConfigError, match="upload_share must be in \\(0, 1\\)"):
            with_overrides(Settings(), {"pipeline.upload_share": bad}, "test")
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        UploadShare(1.0)


# ---- the loop --------------------------------------------------------------------------------------------------------
class TimedFaces(ScriptedFaces):
    """Scripted faces that take `seconds` to find, as detection on a real frame does; when each call began is kept."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.began_at: list[float] = []

    def detect(self, image_bgr: np.ndarray, timestamp_ms: int) -> list[Detection]:
        self.began_at.append(time.monotonic())
        time.sleep(self.seconds)
        return super().detect(image_bgr, timestamp_ms)


class OneFace(TimedFaces):
    """One face at a fixed place in every frame of a real (compressed, hence noisy) video."""

    def detect(self, image_bgr: np.ndarray, timestamp_ms: int) -> list[Detection]:
        super().detect(np.zeros((1, 1, 3), np.uint8), timestamp_ms)
        return [Detection((40.0, 60.0, 120.0, 140.0), 0.99)]


class Detectors:
    """The camera's detector first, then the upload's: one per stream, in the order the streams start."""

    def __init__(self) -> None:
        self.made: list[TimedFaces] = []

    def __call__(self) -> TimedFaces:
        self.made.append(OneFace(UPLOAD_DETECT_S) if self.made else TimedFaces(CAMERA_DETECT_S))
        return self.made[-1]


@pytest.fixture(scope="module")
def upload_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("upload-share")
    return media.write_video(folder / "upload.mp4", media.render(media.one_face(), UPLOAD_FRAMES))


def loop_time_shares(camera: list[float], upload: list[float]) -> tuple[float, float]:
    """The loop's time over the upload's span, measured from outside: the loop runs one detection per iteration and is
    never idle here, so an iteration lasts from the start of its detection to the next one's. The upload's part, and
    the camera's processed frames a second."""
    calls = sorted([(t, False) for t in camera] + [(t, True) for t in upload])
    start, end = upload[0], upload[-1]
    spans = [(b[0] - a[0], a[1]) for a, b in itertools.pairwise(calls) if start <= a[0] < end]
    upload_s = sum(seconds for seconds, is_upload in spans if is_upload)
    camera_frames = sum(1 for t in camera if start <= t < end)
    return upload_s / sum(seconds for seconds, _ in spans), camera_frames / (end - start)


@pytest.fixture
def loop_beside_camera(seed_model: LoadedModel, upload_video: Path) -> Iterator[tuple[Pipeline, Detectors]]:
    overrides = {
        "faces.mode": "full_frame",
        "model.window": 10,
        "pipeline.status_interval_s": 1e9,
        "pipeline.upload_share": SHARE,
        "clips.enabled": False,
    }
    settings: Settings = with_overrides(Settings(), overrides, "test")
    detectors = Detectors()
    pipeline = Pipeline(FakeEngine(), seed_model, "test-session", settings, [RecordingSink()], detectors)
    scene = stub_producer(lambda i: [Square(RED, 20 + i % 5, 30)], burst=0, interval_s=CAMERA_INTERVAL_S)
    camera = Source("cam", SourceSpec("webcam", "stub", live=True, display="stub"), settings.sources, producer=scene)
    upload_spec = SourceSpec("upload", str(upload_video), live=False, display="upload.mp4")
    upload = Source("upload-1", upload_spec, settings.sources)
    pipeline.add_source(camera)
    pipeline.add_source(upload)
    loop = threading.Thread(target=pipeline.run, kwargs={"duration_s": 120}, daemon=True)
    loop.start()
    yield pipeline, detectors
    pipeline.stop()
    loop.join(10)
    camera.join(2)
    upload.join(2)


def test_an_upload_beside_a_busy_camera_gets_its_share_and_finishes(
    loop_beside_camera: tuple[Pipeline, Detectors],
) -> None:
    pipeline, detectors = loop_beside_camera
    deadline = time.monotonic() + 60  # far past what it needs (about 3 s); on the old loop it never finished

    def upload_health():
        return next((h for h in pipeline.health() if h.stream_id == "upload-1"), None)

    while (health := upload_health()) is None or health.state not in (StreamState.ENDED, StreamState.FAILED):
        assert time.monotonic() < deadline, f"the upload did not finish beside the camera: {health}"
        time.sleep(0.05)
    assert health.state is StreamState.ENDED and health.frames_read == UPLOAD_FRAMES, health
    assert health.crops_encoded == UPLOAD_FRAMES and health.crops_skipped == 0  # an upload's crops are never skipped
    camera_detector, upload_detector = detectors.made
    assert upload_detector.calls == UPLOAD_FRAMES
    share, camera_fps = loop_time_shares(list(camera_detector.began_at), list(upload_detector.began_at))
    # Its share of the loop, and no more: the camera keeps the rest (priority), within a few iterations' rounding.
    assert SHARE - 0.1 <= share <= SHARE + 0.15, share
    assert camera_fps > 0.3 / CAMERA_DETECT_S, camera_fps

    pipeline.stop()
    time.sleep(0.3)
    camera = next(h for h in pipeline.health() if h.stream_id == "cam")
    thinned_share = camera.frames_thinned / (camera_detector.calls + camera.frames_thinned)
    # The camera was thinned for the upload, but that is not overload: those frames are left out of the banner's share.
    assert camera.frames_thinned > 0 and camera.overload_share < thinned_share - 0.05, (camera, thinned_share)
