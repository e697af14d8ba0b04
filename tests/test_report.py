"""The run report read back from the store: per stream its status, frames and faces, and one overall verdict with
the rule that made it (fast: the loop's test doubles over a real SQLite store)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from model.labels import UNCALIBRATED_WARNING
from model.weights import LoadedModel
from stream.capture.references import SourceSpec
from stream.config import Settings, with_overrides
from stream.detector import Detector
from stream.store import REPORT_SCHEMA, FaceReport, Report, build_report, open_reader, overall_verdict
from tests.doubles import BLUE, RED, FaceFactory, FakeEngine, Scene, Square, stub_producer

pytestmark = pytest.mark.fast  # make test-fast

FILE_SPEC = SourceSpec("file", "stub.mp4", live=False, display="stub.mp4")
RED_FACE, BLUE_FACE = Square(RED, 10, 40), Square(BLUE, 110, 40)


def report_of(
    tmp_path: Path, loaded: LoadedModel, scenes: Mapping[str, tuple[Scene, int]], overrides: Mapping[str, Any] = {}
) -> Report:
    defaults = {
        "faces.mode": "full_frame",  # every face found in every frame: exact counts
        "model.window": 10,
        "verdicts.rolling": 3,
        "pipeline.status_interval_s": 1e9,
        "clips.enabled": False,
        "store.db": str(tmp_path / "store.db"),
    }
    settings = with_overrides(Settings(), {**defaults, **overrides}, "test")
    with Detector(settings, list(scenes), loaded=loaded, engine=FakeEngine(), detector_factory=FaceFactory()) as run:
        for name, (scene, frames) in scenes.items():
            run.open_source(FILE_SPEC, name, producer=stub_producer(scene, frames))
        run.run(duration_s=10)
        run.close()
        with open_reader(settings.store.db) as reader:
            return build_report(reader, run.session_id)


@pytest.fixture(scope="module")
def calibrated(seed_model: LoadedModel) -> LoadedModel:
    return dataclasses.replace(seed_model, calibrated=True)


def test_a_fake_face_makes_the_stream_fake_and_a_real_one_real(tmp_path, calibrated) -> None:
    report = report_of(
        tmp_path,
        calibrated,
        {"both": (lambda i: [RED_FACE, BLUE_FACE], 20), "real": (lambda i: [BLUE_FACE], 20)},
    )
    assert report.schema == REPORT_SCHEMA and report.calibrated and report.warning is None
    assert report.settings["overall_fake_windows"] == 3 and report.settings["window"] == 10
    both, real = report.streams
    assert (both.stream_id, both.verdict, both.status) == ("both", "FAKE", "ok")
    red = next(f for f in both.faces if f.verdict == "FAKE")
    # Window 10 over 20 frames: 11 window scores; rolling 3 turns FAKE on the 3rd, so 9 are given while FAKE.
    assert (red.frames_scored, red.fake_windows, red.crops) == (11, 9, 20)
    assert both.verdict_rule.startswith(f"face {red.track_id} was FAKE for 9 window scores")
    assert (both.frames_read, both.frames_scored) == (20, 11)
    assert (real.verdict, real.faces[0].verdict, real.faces[0].fake_windows) == ("REAL", "REAL", 0)
    assert real.verdict_rule.startswith("every scored face ended REAL")
    assert json.loads(json.dumps(report.as_dict()))["streams"][0]["faces"][0]["track_id"] == 1


def test_the_overall_rule_needs_enough_fake_windows(tmp_path, calibrated) -> None:
    report = report_of(
        tmp_path, calibrated, {"both": (lambda i: [RED_FACE], 20)}, {"verdicts.overall_fake_windows": 10}
    )
    [stream] = report.streams
    assert stream.faces[0].fake_windows == 9 and stream.faces[0].verdict == "FAKE"
    assert stream.verdict == "UNSURE"  # FAKE for 9 windows, the rule asks for 10
    assert report.settings["overall_fake_windows"] == 10


def test_too_short_to_score_and_no_faces_say_so(tmp_path, calibrated) -> None:
    report = report_of(tmp_path, calibrated, {"short": (lambda i: [RED_FACE], 7), "empty": (lambda i: [], 12)})
    empty, short = sorted(report.streams, key=lambda s: s.stream_id)
    [face] = short.faces
    assert (face.status, face.frames_scored, face.crops) == ("not_scored", 0, 7)
    assert face.note == "not scored: seen in 7 of the 10 frames a window needs"
    assert (short.verdict, short.verdict_rule, short.status) == ("UNSURE", "no face was scored", "ok")
    assert (empty.status, empty.verdict, empty.verdict_rule, empty.frames_read) == (
        "no_faces",
        "UNSURE",
        "no face was found",
        12,
    )


def test_an_uncalibrated_model_is_unsure_and_says_why(tmp_path, seed_model) -> None:
    report = report_of(tmp_path, seed_model, {"both": (lambda i: [RED_FACE, BLUE_FACE], 15)})
    [stream] = report.streams
    assert report.warning == UNCALIBRATED_WARNING and not report.calibrated
    assert stream.verdict == "UNSURE" and UNCALIBRATED_WARNING in stream.verdict_rule
    assert all(f.verdict == "UNSURE" and f.fake_windows == 0 for f in stream.faces)


def face(verdict: str, fake_windows: int, scored: bool = True) -> FaceReport:
    return FaceReport(1, "scored" if scored else "not_scored", "", 0.0, 1.0, 30, 20 if scored else 0, fake_windows,
                      verdict, 0.5, 0.9)  # fmt: skip


@pytest.mark.parametrize(
    ("faces", "expected"),
    [
        ([face("REAL", 0), face("FAKE", 3)], "FAKE"),
        ([face("REAL", 5)], "FAKE"),  # FAKE long enough earlier, REAL at the end: still flagged
        ([face("REAL", 2), face("REAL", 0)], "REAL"),
        ([face("REAL", 0), face("UNSURE", 0)], "UNSURE"),
        ([face("UNSURE", 0, scored=False)], "UNSURE"),
        ([], "UNSURE"),
    ],
)
def test_overall_verdict_rule(faces, expected) -> None:
    assert overall_verdict(faces, calibrated=True, fake_windows_needed=3)[0] == expected
