"""Re-detection of a face inside a region of the frame with the short-range model (`CropFaceDetector`): a small face
in a 1080p frame gives the same tight box the full-range detector gives where it sees that face well."""

from __future__ import annotations

import numpy as np
import pytest

from stream.capture.demo import ASTRONAUT_FACE_BOX, ASTRONAUT_HEAD_PATCH, background, head_patch, paste
from stream.config import BoxMapping
from stream.faces.mediapipe_detectors import SHORT_RANGE_BOX_MAPPING, CropFaceDetector, FaceDetector, square_region
from stream.records import Detection

HEAD_SCALE = 0.86  # the astronaut's tight (dlib-like) face box is then ~80 px wide
HEAD_AT = (1400, 700)  # the head patch's top-left in the 1920x1080 frame
Box = tuple[float, float, float, float]


def iou(a: Box, b: Box) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def pasted_face(width: int = 1920, height: int = 1080, at: tuple[int, int] = HEAD_AT) -> tuple[np.ndarray, Box]:
    """A frame with the astronaut's head pasted at `at`, and the face's box (from the demo's face box) in it."""
    frame = background(width, height).copy()
    paste(frame, head_patch(scale=HEAD_SCALE), *at)
    fx1, fy1, fx2, fy2 = ASTRONAUT_FACE_BOX
    px, py = ASTRONAUT_HEAD_PATCH[:2]
    x, y = at
    box = (
        x + (fx1 - px) * HEAD_SCALE,
        y + (fy1 - py) * HEAD_SCALE,
        x + (fx2 - px) * HEAD_SCALE,
        y + (fy2 - py) * HEAD_SCALE,
    )
    return frame, box


def full_range_box(frame: np.ndarray, around: tuple[int, int]) -> Detection:
    """FaceDetector's tight box on a 640x480 cut of `frame` (same pixels; there the face spans ~24 of the model's
    192 input pixels instead of ~8), in the frame's coordinates."""
    x0, y0 = around[0] - 200, around[1] - 150
    cut = np.ascontiguousarray(frame[y0 : y0 + 480, x0 : x0 + 640])
    with FaceDetector() as detector:
        (found,) = detector.detect(cut, 0)
    x1, y1, x2, y2 = found.box_xyxy
    return Detection((x1 + x0, y1 + y0, x2 + x0, y2 + y0), found.score)


@pytest.fixture(scope="module")
def crop_detector():
    with CropFaceDetector() as detector:
        yield detector


def test_a_small_face_in_1080p_gets_the_full_range_tight_box(crop_detector) -> None:
    frame, face = pasted_face()
    reference = full_range_box(frame, HEAD_AT)
    assert 70 <= reference.box_xyxy[2] - reference.box_xyxy[0] <= 90
    (found,) = crop_detector.detect_regions(frame, [square_region(face, 2.5)])
    assert found is not None and found.score >= 0.75
    assert iou(found.box_xyxy, reference.box_xyxy) >= 0.8


def test_plain_background_is_none_and_order_is_kept(crop_detector) -> None:
    frame, face = pasted_face()
    background_region = square_region((300.0, 300.0, 380.0, 380.0), 2.5)
    found = crop_detector.detect_regions(frame, [background_region, square_region(face, 2.5), background_region])
    assert found[0] is None and found[2] is None
    assert isinstance(found[1], Detection)
    assert crop_detector.detect_regions(frame, []) == []


def test_a_region_reaching_past_the_frame_edge_is_padded_and_mapped_back(crop_detector) -> None:
    inside, inside_face = pasted_face(640, 480, at=(200, 100))
    (expected,) = crop_detector.detect_regions(inside, [square_region(inside_face, 2.5)])
    frame, face = pasted_face(640, 480, at=(-10, 300))  # the crop extends past the left and bottom edges
    region = square_region(face, 2.5)
    assert region[0] < 0 and region[3] > 480
    (found,) = crop_detector.detect_regions(frame, [region])
    assert found is not None
    x1, y1, x2, y2 = expected.box_xyxy
    shifted = (x1 - 210, y1 + 200, x2 - 210, y2 + 200)
    assert iou(found.box_xyxy, shifted) >= 0.8


def test_regions_outside_the_frame_or_too_small_are_none(crop_detector) -> None:
    frame, _ = pasted_face(640, 480, at=(200, 100))
    regions = [(-300.0, -300.0, -10.0, -10.0), (700.0, 100.0, 900.0, 300.0), (100.0, 100.0, 104.0, 104.0)]
    assert crop_detector.detect_regions(frame, regions) == [None, None, None]


def test_the_mapping_is_applied_to_the_short_range_box() -> None:
    frame, face = pasted_face(640, 480, at=(200, 100))
    region = square_region(face, 2.5)
    with CropFaceDetector(mapping=BoxMapping(0.0, 0.0, 1.0, 1.0)) as raw_detector:
        (raw,) = raw_detector.detect_regions(frame, [region])
    with CropFaceDetector() as detector:
        (mapped,) = detector.detect_regions(frame, [region])
    x1, y1, x2, y2 = raw.box_xyxy
    assert mapped.box_xyxy == pytest.approx(SHORT_RANGE_BOX_MAPPING.apply(x1, y1, x2 - x1, y2 - y1))
    assert mapped.score == pytest.approx(raw.score)


def test_square_region_is_centred_on_the_box() -> None:
    assert square_region((10.0, 20.0, 50.0, 40.0), 2.5) == pytest.approx((-20.0, -20.0, 80.0, 80.0))


@pytest.mark.parametrize(("kwargs", "message"), [({"min_score": 1.0}, "min_score"), ({"input_size": 8}, "input_size")])
def test_bad_settings_are_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        CropFaceDetector(**kwargs)
