"""Look-ahead for files (`pipeline.lookahead_frames`, stream/loop/lookahead.py): the same answers as frame by frame
on a real video with a FAKE-scored and a REAL-scored face, a bounded number of frames held, found frames that a
stop leaves unprocessed make the file interrupted, and frame by frame while a live stream runs."""

from __future__ import annotations

import dataclasses
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.faces.cropper import FaceCrop, FaceCropper
from stream.records import DecodedFrame, EncodedBatch, Frame, StopReason, StreamState, VerdictState
from stream.store import build_report
from tests import media
from tests.doubles import FaceFactory, RecordingSink, render
from tests.pipeline_run import run_files
from tests.test_pipeline import colour_checkpoint as colour_checkpoint  # the fixture: colour FAKE, gray REAL
from tests.test_pipeline_loop import LEFT_RED, RIGHT_BLUE, build, file_source, live_source, loop_settings

FRAMES = 90


@pytest.fixture(scope="module")
def colour_gray(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lookahead")
    return media.write_video(folder / "colour_gray.mkv", media.render(media.colour_and_gray_faces(), FRAMES))


def run_recording_crops(video: Path, loaded, db: Path, cache: Path, lookahead: int, monkeypatch):
    """One run of `video`, with every crop the cropper cut: (frame index, track id, box)."""
    cut: list[tuple[int, int, tuple[float, ...]]] = []
    real_crops = FaceCropper.crops

    def recording(self: FaceCropper, frame: Frame) -> list[FaceCrop]:
        crops = real_crops(self, frame)
        cut.extend((c.frame.index, c.track.track_id, tuple(c.track.box)) for c in crops)
        return crops

    monkeypatch.setattr(FaceCropper, "crops", recording)
    overrides = {"pipeline.lookahead_frames": lookahead, "verdicts.hysteresis": 0.2, "verdicts.rolling": 3}
    result = run_files([video], loaded, db, cache, overrides)
    monkeypatch.setattr(FaceCropper, "crops", real_crops)
    with result.reader() as reader:
        scores = {s.track_id: reader.scores(result.session_id, "s1", s.track_id) for s in result.summaries}
        report = build_report(reader, result.session_id)
    return result, cut, scores, report


def test_look_ahead_gives_the_same_answers_as_frame_by_frame(
    colour_gray, colour_checkpoint, tmp_path, engine_cache, monkeypatch
) -> None:
    off = run_recording_crops(colour_gray, colour_checkpoint, tmp_path / "off.db", engine_cache, 0, monkeypatch)
    on = run_recording_crops(colour_gray, colour_checkpoint, tmp_path / "on.db", engine_cache, 32, monkeypatch)
    (off_result, off_cut, off_scores, off_report), (on_result, on_cut, on_scores, on_report) = off, on

    verdicts = sorted(s.verdict for s in off_result.summaries)
    assert verdicts == [VerdictState.FAKE, VerdictState.REAL]  # the video has one of each
    assert on_cut == off_cut  # the same crop boxes, track ids and frames
    assert [s.track_id for s in on_result.summaries] == [s.track_id for s in off_result.summaries]
    assert [s.verdict for s in on_result.summaries] == [s.verdict for s in off_result.summaries]
    assert all(s.crops_skipped == 0 for s in on_result.summaries)
    assert on_scores.keys() == off_scores.keys()
    for track, scores in off_scores.items():
        assert [s.frame_index for s in on_scores[track]] == [s.frame_index for s in scores]
        assert [s.p_fake for s in on_scores[track]] == pytest.approx([s.p_fake for s in scores], abs=0.01)

    def comparable(report):
        streams = []
        for stream in report.streams:
            faces = [dataclasses.replace(f, mean_p_fake=None, max_p_fake=None) for f in stream.faces]
            streams.append(dataclasses.replace(stream, faces=faces))
        return streams

    assert comparable(on_report) == comparable(off_report)
    for on_stream, off_stream in zip(on_report.streams, off_report.streams, strict=True):
        for on_face, off_face in zip(on_stream.faces, off_stream.faces, strict=True):
            assert on_face.mean_p_fake == pytest.approx(off_face.mean_p_fake, abs=0.01)
            assert on_face.max_p_fake == pytest.approx(off_face.max_p_fake, abs=0.01)
    assert on_report.settings == off_report.settings


class HeldFrames:
    """Counts the decoded images alive at once (the producer's, the buffer's, the finder's and the loop's)."""

    def __init__(self) -> None:
        self.alive = self.most = 0
        self._lock = threading.Lock()

    def made(self, image) -> None:
        with self._lock:
            self.alive += 1
            self.most = max(self.most, self.alive)
        weakref.finalize(image, self._gone)

    def _gone(self) -> None:
        with self._lock:
            self.alive -= 1


def counted_producer(held: HeldFrames, frames: int, squares) -> Iterator[DecodedFrame]:
    def produce() -> Iterator[DecodedFrame]:
        for index in range(frames):
            image = render(squares)
            held.made(image)
            yield DecodedFrame(image, index / 30)
            del image

    return produce


class SlowSink(RecordingSink):
    """A sink that takes its time, so the finder runs as far ahead as it may."""

    def send(self, events) -> None:
        time.sleep(0.02)
        super().send(events)


def test_frames_held_stay_within_file_buffer_plus_look_ahead(calibrated) -> None:
    lookahead = 6
    settings = loop_settings({"pipeline.lookahead_frames": lookahead, "sources.file_buffer": 3})
    held, sink = HeldFrames(), SlowSink()
    pipeline = build(settings, calibrated, sink, FaceFactory())
    pipeline.add_source(file_source(settings, counted_producer(held, 60, (LEFT_RED, RIGHT_BLUE))))
    pipeline.run(duration_s=20)
    [final] = pipeline.health()
    assert final.state == StreamState.ENDED and final.crops_encoded == 120
    # The buffer, the frames found ahead (and being found, and being processed), and what the decoder has in hand
    # (the frame waiting for room in the buffer, or the one it last put there and the next it is making).
    assert held.most <= settings.sources.file_buffer + lookahead + 2
    batches = [b.crops for b in sink.of(EncodedBatch)]
    assert max(batches) > 2  # several frames' crops went to the encoder together


def test_a_stop_with_found_frames_waiting_interrupts_the_file(calibrated) -> None:
    frames = 12
    settings = loop_settings({"pipeline.lookahead_frames": 32, "sources.file_buffer": 32})
    stopped = threading.Event()

    class StopOnceAllFound(RecordingSink):
        def send(self, events) -> None:
            super().send(events)
            if not stopped.is_set():  # the first flush: wait until every frame was read and found, then stop
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and not (source.read_to_end and len(source.buffer) == 0):
                    time.sleep(0.01)
                time.sleep(0.2)
                stopped.set()
                pipeline.stop(StopReason.CTRL_C)

    sink = StopOnceAllFound()
    pipeline = build(settings, calibrated, sink, FaceFactory())
    source = file_source(settings, counted_producer(HeldFrames(), frames, (LEFT_RED,)))
    pipeline.add_source(source)
    pipeline.run(duration_s=10)
    [final] = pipeline.health()
    # Every frame was read from the file and taken from its buffer, but not all were processed.
    assert source.read_to_end and len(source.buffer) == 0 and not source.stopped_early
    assert final.crops_encoded < frames
    assert final.state == StreamState.INTERRUPTED and final.stop_reason == StopReason.CTRL_C


@pytest.fixture(scope="module")
def calibrated(seed_model):
    return dataclasses.replace(seed_model, calibrated=True)


def test_look_ahead_is_off_while_a_live_stream_runs(calibrated) -> None:
    settings = loop_settings({"pipeline.lookahead_frames": 32, "sources.file_buffer": 16})
    sink = SlowSink()
    pipeline = build(settings, calibrated, sink, FaceFactory())
    camera_stop = threading.Event()

    def camera() -> Iterator[DecodedFrame]:
        index = 0
        while not camera_stop.is_set():
            yield DecodedFrame(render((RIGHT_BLUE,)), index / 30)
            index += 1
            time.sleep(1 / 30)

    pipeline.add_source(live_source(settings, camera, "live"))
    file_frames = 30
    pipeline.add_source(file_source(settings, counted_producer(HeldFrames(), file_frames, (LEFT_RED,)), "file"))
    runner = threading.Thread(target=pipeline.run, kwargs={"duration_s": 20, "serve": True})
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
            h.stream_id == "file" and h.state == StreamState.ENDED for h in pipeline.health()
        ):
            time.sleep(0.05)
    finally:
        camera_stop.set()
        pipeline.stop()
        runner.join(10)
    [file_health] = [h for h in pipeline.health() if h.stream_id == "file"]
    assert file_health.state == StreamState.ENDED and file_health.crops_encoded == file_frames
    # One frame of the file at a time beside the camera's: never more than one crop of each in a batch.
    assert max(b.crops for b in sink.of(EncodedBatch)) <= 2


def test_a_realtime_file_is_found_frame_by_frame(calibrated) -> None:
    settings = loop_settings({"pipeline.lookahead_frames": 32, "sources.realtime": True})
    sink = SlowSink()
    pipeline = build(settings, calibrated, sink, FaceFactory())
    pipeline.add_source(file_source(settings, counted_producer(HeldFrames(), 20, (LEFT_RED,))))
    pipeline.run(duration_s=10)
    assert {b.crops for b in sink.of(EncodedBatch)} == {1}
