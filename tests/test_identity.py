"""Quality gate: one person, one face id (issue 10). The detect → track → crop unit, built from the settings below, is
run on made videos with ground truth (tests/face_scenes.py) and fails when it gets worse than: recall >= 0.95, every
true face exactly one id, windows >= 0.9 of the ideal, no false tracks. The metrics themselves are checked first
with a scripted cropper (no detector)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from stream.capture.demo import background
from stream.config import Settings, with_overrides
from tests.face_scenes import (
    GATE_SCENES,
    TIGHT_FACE_WIDTH,
    Box,
    Head,
    Scene,
    compose,
    measure,
    measure_settings,
)

# The unit under the gate: dotted overrides of the default settings ({} = the defaults).
IDENTITY_SETTINGS: dict[str, object] = {}

MIN_RECALL = 0.95
MIN_WINDOWS = 0.9

# Measured on the whole-frame unit (the one before issue 10: the full-range model on the whole frame, IoU tracker).
# They are expected failures only while the gate runs that unit (faces.mode full_frame, or a build without modes).
WHOLE_FRAME_FAILURES = {
    "distant_80px_1080p": "whole frame into 192x192: an 80 px face at 1080p is 8 model px; recall 0.64, windows 0.65",
    "crossing_720p": "the moving 90 px face is lost 38% of frames at 720p; recall 0.78, windows 0.75",
    "call_grid_720p": "one 90 px call tile's face is lost half the time; recall 0.86, 2 ids for one face, windows 0.80",
}


def _gate_runs_whole_frame() -> bool:
    faces = with_overrides(Settings(), IDENTITY_SETTINGS, "IDENTITY_SETTINGS").faces
    return getattr(faces, "mode", "full_frame") == "full_frame"


def _gate_params() -> list[object]:
    whole_frame = _gate_runs_whole_frame()
    params = []
    for name in GATE_SCENES:
        marks = []
        if whole_frame and name in WHOLE_FRAME_FAILURES:
            marks.append(pytest.mark.xfail(strict=False, reason=WHOLE_FRAME_FAILURES[name]))
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.mark.parametrize("name", _gate_params())
def test_one_person_one_face_id(name: str) -> None:
    metrics = measure_settings(GATE_SCENES[name](), IDENTITY_SETTINGS)
    problems = []
    if metrics.recall is not None and metrics.recall < MIN_RECALL:
        problems.append(f"recall {metrics.recall:.3f} < {MIN_RECALL}")
    if any(ids != 1 for ids in metrics.ids_per_face):
        problems.append(f"ids per true face {list(metrics.ids_per_face)} (each must be exactly 1)")
    if metrics.windows_ratio is not None and metrics.windows_ratio < MIN_WINDOWS:
        problems.append(f"windows {metrics.windows_ratio:.3f} of the ideal < {MIN_WINDOWS}")
    if metrics.false_tracks:
        problems.append(f"false tracks {list(metrics.false_tracks)}")
    assert not problems, f"{'; '.join(problems)}\n{metrics.summary()}"


# ---- the metrics, on a scripted cropper -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Track:
    track_id: int
    box: Box


@dataclass(frozen=True)
class _Crop:
    track: _Track


class _ScriptedCropper:
    """Crops straight from the ground truth: `ids(frame, face_id)` gives the track id (None: missed), plus
    `extra(frame)` boxes under ids of their own."""

    def __init__(self, scene: Scene, ids=lambda i, face: face, extra=lambda i: []) -> None:
        self.scene, self.ids, self.extra = scene, ids, extra

    def crops(self, frame) -> list[_Crop]:
        found = []
        for face in self.scene.truth[frame.index]:
            track_id = self.ids(frame.index, face.face_id)
            if track_id is not None:
                found.append(_Crop(_Track(track_id, face.box)))
        return found + [_Crop(_Track(track_id, box)) for track_id, box in self.extra(frame.index)]


def _two_faces(frames: int = 30) -> Scene:
    left, right = Head(40), Head(50, flip=True)
    return compose("two", background(320, 240), [(left, lambda i: (10 + i, 20)), (right, lambda i: (160, 60))], frames)


def test_a_perfect_cropper_scores_the_ideal() -> None:
    scene = _two_faces()
    metrics = measure(scene, _ScriptedCropper(scene))
    assert metrics.recall == 1.0 and metrics.ids_per_face == (1, 1) and metrics.false_tracks == ()
    assert (metrics.windows, metrics.ideal_windows, metrics.windows_ratio) == (42, 42, 1.0)  # 2 x (30 - 10 + 1)
    assert metrics.duplicate_frames == 0 and len(metrics.ms_per_frame) == 30


def test_an_id_switch_and_misses_cost_ids_recall_and_windows() -> None:
    scene = _two_faces()

    def ids(i: int, face: int) -> int | None:
        if face == 2:
            return 2
        if 15 <= i < 18:
            return None  # missed for 3 frames, after the allowance
        return 1 if i < 15 else 7  # and back under a new id

    metrics = measure(scene, _ScriptedCropper(scene, ids))
    first = metrics.faces[0]
    assert first.track_ids == (1, 7) and metrics.ids_per_face == (2, 1)
    assert (first.counted_frames, first.covered_frames) == (20, 17)
    assert first.windows == (15 - 9) + (12 - 9) and first.ideal_windows == 21
    assert metrics.recall == pytest.approx((17 + 20) / 40)


def test_misses_during_the_allowance_are_not_counted() -> None:
    scene = _two_faces()
    metrics = measure(scene, _ScriptedCropper(scene, lambda i, face: None if i < 10 else face))
    assert metrics.recall == 1.0 and metrics.windows == 2 * (20 - 9)


def test_boxes_away_from_every_face_are_false_tracks_and_duplicates_are_extra_ids() -> None:
    scene = _two_faces()
    duplicate = 40  # a second, shifted box on face 2 in frames 5..9
    far = 50

    def extra(i: int) -> list[tuple[int, Box]]:
        boxes = [(far, (280.0, 200.0, 300.0, 220.0))]
        if 5 <= i < 10:
            x1, y1, x2, y2 = scene.truth[i][1].box
            boxes.append((duplicate, (x1 + 8, y1 + 8, x2 + 8, y2 + 8)))
        return boxes

    metrics = measure(scene, _ScriptedCropper(scene, extra=extra))
    assert metrics.false_tracks == (far,)
    assert metrics.faces[1].track_ids == (2, duplicate) and metrics.duplicate_frames == 5
    assert metrics.windows == metrics.ideal_windows  # a duplicate's windows never add past the ideal


def test_a_scene_without_faces_has_no_recall_or_windows_to_score() -> None:
    scene = compose("empty", background(160, 120), [], 12)
    metrics = measure(scene, _ScriptedCropper(scene, extra=lambda i: [(3, (10.0, 10.0, 40.0, 40.0))]))
    assert metrics.recall is None and metrics.windows_ratio is None and metrics.false_tracks == (3,)


def test_the_true_box_is_the_tight_face_box_at_every_scale_and_flip() -> None:
    for width in (40, 80, 200):
        for flip in (False, True):
            head = Head(width, flip=flip)
            x1, y1, x2, y2 = head.face_box(0, 0)
            assert x2 - x1 == pytest.approx(width, rel=0.02) and y2 - y1 == pytest.approx(width, rel=0.03)
            assert 0 < x1 < x2 < head.patch.shape[1] and 0 < y1 < y2 < head.patch.shape[0]
    # the mirrored head's face box is the mirror of the head's
    plain, mirrored = Head(TIGHT_FACE_WIDTH), Head(TIGHT_FACE_WIDTH, flip=True)
    patch_width = plain.patch.shape[1]
    assert mirrored.face_box(0, 0)[0] == pytest.approx(patch_width - plain.face_box(0, 0)[2])
