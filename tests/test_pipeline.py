"""The pipeline end to end on real files: decode, detect, track, encode, rings, scores, verdicts, store."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from streamlit import config as streamlit_config

from dashboard.data import DB_ENV
from model.preprocess import crop_face
from model.weights import load_checkpoint, save_checkpoint
from stream.config import Settings
from stream.faces.mediapipe_detectors import FaceDetector
from stream.records import VerdictState
from stream.store import build_report, open_reader
from tests import media
from tests.dashboard_store import dashboard
from tests.helpers import fit_seed_head
from tests.pipeline_run import run_files

EVALUATED = {"evaluation": {"threshold": 0.5}}  # only an evaluated checkpoint is calibrated

# A new face is cropped from the frame its re-detections confirmed it, this many frames after it appeared.
CONFIRM_FRAMES = Settings().faces.confirm_frames


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    return {
        "one_face": media.write_video(folder / "one_face.mp4", media.render(media.one_face(), 40)),
        "crossing": media.write_video(folder / "crossing.mp4", media.render(media.two_faces_crossing(), 75)),
        "colour_gray": media.write_video(folder / "colour_gray.mkv", media.render(media.colour_and_gray_faces(), 45)),
        "leaving": media.write_video(
            folder / "leaving.mp4", media.render(media.leaving_and_returning(range(20, 45)), 65)
        ),
        "no_face": media.write_video(folder / "no_face.mp4", media.render(media.no_face(), 20)),
        "short": media.write_video(folder / "short.mp4", media.render(media.one_face(), 7)),
    }


@pytest.fixture(scope="module")
def colour_checkpoint(tmp_path_factory, seed_model):
    """A checkpoint whose head calls the colour astronaut FAKE and the grayscale one REAL."""
    scene = media.colour_and_gray_faces()
    with FaceDetector() as detector:
        boxes = sorted(d.box_xyxy for d in detector.detect(scene(0), 0))  # left (colour) first
    assert len(boxes) == 2
    colour = [crop_face(scene(i), boxes[0]) for i in range(4)]
    gray = [crop_face(scene(i), boxes[1]) for i in range(4)]
    fitted = fit_seed_head(seed_model.network, colour, gray)
    path = tmp_path_factory.mktemp("ckpt") / "colour_is_fake.pt"
    return load_checkpoint(
        save_checkpoint(fitted, path, window=10, trained_on="test: colour vs gray", metrics=EVALUATED)
    )


def saturation(jpeg: bytes) -> float:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return float(cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[:, :, 1].mean())


def test_one_face_scores_land_in_the_store(videos, seed_model, tmp_path, engine_cache) -> None:
    result = run_files([videos["one_face"]], seed_model, tmp_path / "db.sqlite", engine_cache)
    assert [s.track_id for s in result.summaries] == [1]
    face = result.summaries[0]
    assert face.crops >= 38  # a face in every frame; MediaPipe may miss one
    assert face.frames_scored == face.crops - 10 + 1  # stride 1, once the ring holds a window
    assert face.verdict == "UNSURE"  # uncalibrated: never a verdict
    with result.reader() as reader:
        stored = reader.face_summaries(result.session_id)
        scores = reader.scores(result.session_id, "s1", 1)
        assert len(scores) == face.frames_scored
        assert [s.frame_index for s in scores] == sorted({s.frame_index for s in scores})
        assert all(b.t_media > a.t_media for a, b in itertools.pairwise(scores))
        assert stored[0].frames_scored == face.frames_scored
        assert stored[0].mean_p_fake == pytest.approx(face.mean_p_fake)
        assert stored[0].max_p_fake == pytest.approx(face.max_p_fake)
        assert stored[0].first_t_media == pytest.approx(face.first_t_media)
        faces = reader.faces(result.session_id)
        assert [f.state for f in faces] == ["gone"] and faces[0].thumbnail_jpeg[:2] == b"\xff\xd8"
        frame = reader.latest_frame(result.session_id, "s1")
        assert frame is not None and cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR) is not None
        assert reader.alerts(result.session_id) == []


def test_crossing_faces_keep_their_ids_and_verdicts(videos, colour_checkpoint, tmp_path, engine_cache) -> None:
    result = run_files([videos["crossing"]], colour_checkpoint, tmp_path / "db.sqlite", engine_cache)
    assert [s.track_id for s in result.summaries] == [1, 2]
    with result.reader() as reader:
        by_face = {t: [s.p_fake for s in reader.scores(result.session_id, "s1", t)] for t in (1, 2)}
    # If the ids swapped while the faces passed each other, one track's scores would jump across 0.5.
    kinds = {t: {p > 0.5 for p in scores} for t, scores in by_face.items()}
    assert sorted(map(len, kinds.values())) == [1, 1], kinds
    assert kinds[1] != kinds[2]
    assert all(len(scores) >= 50 for scores in by_face.values())


def test_verdicts_alerts_and_hysteresis(videos, colour_checkpoint, tmp_path, engine_cache) -> None:
    verdicts = {"verdicts.threshold": 0.5, "verdicts.hysteresis": 0.2, "verdicts.rolling": 3}
    result = run_files([videos["colour_gray"]], colour_checkpoint, tmp_path / "db.sqlite", engine_cache, verdicts)
    verdicts = {s.track_id: s.verdict for s in result.summaries}
    with result.reader() as reader:
        faces = {f.track_id: f for f in reader.faces(result.session_id)}
        colour_id = max(faces, key=lambda t: saturation(faces[t].thumbnail_jpeg))
        gray_id = min(faces, key=lambda t: saturation(faces[t].thumbnail_jpeg))
        assert verdicts == {colour_id: "FAKE", gray_id: "REAL"}
        alerts = reader.alerts(result.session_id)
        assert [(a.track_id, a.kind) for a in alerts] == [(colour_id, "turned_fake")]
        assert faces[colour_id].first_t_media < alerts[0].t_media <= faces[colour_id].last_t_media
        history = reader.verdicts(result.session_id, "s1", colour_id)
        assert [v.state for v in history] == [VerdictState.FAKE]  # once, no flapping
        assert faces[colour_id].verdict == VerdictState.FAKE


def test_a_face_leaving_and_returning_gets_a_new_id(videos, seed_model, tmp_path, engine_cache) -> None:
    result = run_files([videos["leaving"]], seed_model, tmp_path / "db.sqlite", engine_cache)
    assert [s.track_id for s in result.summaries] == [1, 2]
    first, second = result.summaries
    assert first.last_t_media < 20 / 30 < 45 / 30 <= second.first_t_media
    with result.reader() as reader:
        assert {f.state for f in reader.faces(result.session_id)} == {"gone"}


def test_no_face_runs_and_scores_nothing(videos, seed_model, tmp_path, engine_cache) -> None:
    result = run_files([videos["no_face"]], seed_model, tmp_path / "db.sqlite", engine_cache)
    assert result.summaries == []
    assert result.sources[0].frames_read == 20


def test_a_source_ending_mid_window_keeps_its_face_unscored(videos, seed_model, tmp_path, engine_cache) -> None:
    result = run_files([videos["short"]], seed_model, tmp_path / "db.sqlite", engine_cache)
    assert len(result.summaries) == 1
    assert result.summaries[0].crops == 7 - CONFIRM_FRAMES and result.summaries[0].frames_scored == 0


def test_several_sources_in_one_process(videos, seed_model, tmp_path, engine_cache) -> None:
    files = [videos["one_face"], videos["colour_gray"]]
    result = run_files(files, seed_model, tmp_path / "db.sqlite", engine_cache)
    assert {(s.stream_id, s.track_id) for s in result.summaries} == {("s1", 1), ("s2", 1), ("s2", 2)}
    with result.reader() as reader:
        assert [s.stream_id for s in reader.streams(result.session_id)] == ["s1", "s2"]
        assert all(s.health is not None and s.health.state.value == "ended" for s in reader.streams(result.session_id))


def test_a_second_run_keeps_the_first(videos, seed_model, tmp_path, engine_cache) -> None:
    db = tmp_path / "db.sqlite"
    first = run_files([videos["one_face"]], seed_model, db, engine_cache)
    with first.reader() as reader:
        before = reader.scores(first.session_id, "s1", 1)
    second = run_files([videos["one_face"]], seed_model, db, engine_cache)
    assert second.session_id != first.session_id
    with first.reader() as reader:
        assert [s.session_id for s in reader.sessions()] == [second.session_id, first.session_id]
        assert reader.scores(first.session_id, "s1", 1) == before


def test_truncated_file_scores_what_decodes_and_says_so(tmp_path, seed_model, engine_cache) -> None:
    path = media.write_video(tmp_path / "cut.mp4", media.render(media.one_face(), 60), faststart=True)
    media.truncate(path, 0.7)
    result = run_files([path], seed_model, tmp_path / "db.sqlite", engine_cache)
    source = result.sources[0]
    assert 0 < source.frames_read < 60
    assert "truncated" in source.last_error
    with result.reader() as reader:
        [stream] = reader.streams(result.session_id)
        assert stream.health.state.value == "truncated" and stream.health.frames_read == source.frames_read
        [reported] = build_report(reader, result.session_id).streams
        assert reported.status == "truncated" and "truncated" in reported.error


@pytest.mark.parametrize(
    ("turn", "matrix"),
    [(cv2.ROTATE_90_COUNTERCLOCKWISE, media.PORTRAIT_MATRIX), (cv2.ROTATE_90_CLOCKWISE, media.PORTRAIT_MATRIX_CCW)],
)
def test_rotated_video_is_turned_upright(tmp_path, seed_model, engine_cache, turn, matrix) -> None:
    sideways = [cv2.rotate(f, turn) for f in media.render(media.one_face(), 15)]
    path = media.write_video(tmp_path / "portrait.mp4", sideways)
    media.tag_rotation(path, matrix)
    result = run_files([path], seed_model, tmp_path / "db.sqlite", engine_cache)
    assert len(result.summaries) == 1 and result.summaries[0].crops >= 14 - CONFIRM_FRAMES


def test_grayscale_and_odd_sized_video(tmp_path, seed_model, engine_cache) -> None:
    frames = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in media.render(media.one_face(width=321, height=243), 15)]
    path = tmp_path / "gray.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=30)
        stream.width, stream.height, stream.pix_fmt = 321, 243, "gray"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="gray")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    result = run_files([path], seed_model, tmp_path / "db.sqlite", engine_cache)
    assert len(result.summaries) == 1 and result.summaries[0].crops >= 14 - CONFIRM_FRAMES


def test_an_alert_gets_an_evidence_clip_of_that_face(videos, colour_checkpoint, tmp_path, engine_cache) -> None:
    overrides = {
        "verdicts.hysteresis": 0.2,
        "verdicts.rolling": 3,
        "clips.enabled": True,
        "clips.directory": str(tmp_path / "clips"),
        "clips.post_roll_s": 0.2,
    }
    result = run_files([videos["colour_gray"]], colour_checkpoint, tmp_path / "db.sqlite", engine_cache, overrides)
    with result.reader() as reader:
        alerts = reader.alerts(result.session_id)
        faces = {f.track_id: f for f in reader.faces(result.session_id)}
    assert len(alerts) == 1 and alerts[0].clip_path is not None
    clip = Path(alerts[0].clip_path)
    assert clip.parent == tmp_path / "clips" and [p.name for p in clip.parent.iterdir()] == [clip.name]
    with av.open(str(clip)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(frames) >= 10  # at least the pre-roll: the ring's window of crops
    flagged = faces[alerts[0].track_id]
    # The clip shows the flagged face (the colour one), not the other.
    assert saturation(cv2.imencode(".jpg", frames[0])[1].tobytes()) == pytest.approx(
        saturation(flagged.thumbnail_jpeg), abs=25
    )
    assert saturation(flagged.thumbnail_jpeg) > 40


def test_clips_go_beside_the_store_and_play_in_a_dashboard_started_elsewhere(
    videos, colour_checkpoint, tmp_path, engine_cache, monkeypatch
) -> None:
    # The detector runs from one directory with a relative store path and the default clip directory ...
    started_in = tmp_path / "detector-cwd"
    started_in.mkdir()
    monkeypatch.chdir(started_in)
    overrides = {"verdicts.hysteresis": 0.2, "verdicts.rolling": 3, "clips.enabled": True, "clips.post_roll_s": 0.2}
    result = run_files([videos["colour_gray"]], colour_checkpoint, Path("store/db.sqlite"), engine_cache, overrides)
    db = started_in / "store" / "db.sqlite"
    with open_reader(db) as reader:
        [alert] = reader.alerts(result.session_id)
    assert alert.clip_path is not None
    clip = Path(alert.clip_path)
    assert clip.is_absolute() and clip.parent == db.parent / "clips" and clip.is_file()
    assert not (started_in / "runs").exists()

    # ... and the dashboard from another, pointed at the store by absolute path, plays the clip.
    elsewhere = tmp_path / "dashboard-cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv(DB_ENV, str(db))
    # The repository's .streamlit/config.toml (127.0.0.1) is not found from here: give its address as launch.py does
    # (else the page refuses to show anything, as it must on every interface without a password).
    before = streamlit_config.get_option("server.address")
    streamlit_config.set_option("server.address", "127.0.0.1")
    try:
        at = dashboard()
    finally:
        streamlit_config.set_option("server.address", before)
    assert not at.exception, [e.value for e in at.exception]
    assert not [c.value for c in at.caption if "clip unavailable" in c.value]
    assert len(at.get("video")) == 1
