"""The roi face finder on its own, with scripted detectors: tracks re-detected in their crops, new faces found by
the round-robin scan, confirmed before they get an id, never born twice, and given up after a long miss."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from stream.config import FaceSettings, TrackingSettings
from stream.faces.roi_finder import FaceFinder, RegionsByCropping, scan_tiles, square_around
from stream.records import Detection
from tests.doubles import RED, ScriptedFaces

pytestmark = pytest.mark.fast  # make test-fast


def frame(width: int, height: int, squares: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """A black frame with red squares (x, y, side)."""
    image = np.zeros((height, width, 3), np.uint8)
    for x, y, side in squares:
        image[y : y + side, x : x + side] = RED
    return image


class Scoring(ScriptedFaces):
    """Scripted faces with a chosen score, and a record of what it was shown."""

    def __init__(self, score: float = 0.99) -> None:
        super().__init__()
        self.score = score
        self.shapes: list[tuple[int, int]] = []

    def detect(self, image_bgr: np.ndarray, timestamp_ms: int) -> list[Detection]:
        self.shapes.append(image_bgr.shape[:2])
        return [Detection(d.box_xyxy, self.score) for d in super().detect(image_bgr, timestamp_ms)]


def finder(scanner: ScriptedFaces, regions: ScriptedFaces | None = None, **settings: object) -> FaceFinder:
    """`settings`: keys of the config's `faces` section, and `max_missed_frames` of its `tracking` section."""
    tracking = TrackingSettings(**{k: settings.pop(k) for k in list(settings) if k == "max_missed_frames"})
    faces = FaceSettings(**settings)  # type: ignore[arg-type]
    return FaceFinder("cam", scanner, RegionsByCropping(regions or ScriptedFaces()), faces, tracking)


def test_a_new_face_gets_its_id_after_two_confirming_re_detections() -> None:
    faces = finder(ScriptedFaces())
    seen = [faces.update(frame(320, 240, [(100 + i, 80, 40)]), i, i) for i in range(5)]
    assert [[t.track_id for t in tracks] for tracks in seen] == [[], [], [1], [1], [1]]
    assert seen[4][0].box == (104.0, 80.0, 144.0, 120.0)  # the crop re-detection's box, in frame pixels


def test_a_new_face_is_confirmed_in_frames_thinned_under_load() -> None:
    # Every third frame processed (the loop under overload): two re-detections in processed frames confirm it.
    faces = finder(ScriptedFaces())
    seen = [faces.update(frame(320, 240, [(100 + i, 80, 40)]), i, i) for i in range(0, 15, 3)]
    assert [[t.track_id for t in tracks] for tracks in seen] == [[], [], [1], [1], [1]]


def test_low_scoring_re_detections_never_confirm_a_track() -> None:
    faces = finder(ScriptedFaces(), Scoring(score=0.6))  # texture-like false positives score 0.5-0.72
    assert all(faces.update(frame(320, 240, [(100, 80, 40)]), i, i) == [] for i in range(12))
    assert faces.live_ids() == []


def test_a_face_is_not_born_twice_and_keeps_its_id_while_it_moves() -> None:
    faces = finder(ScriptedFaces(), scan_period=1)  # scanning every frame finds the same face again and again
    ids = set()
    for i in range(40):
        for track in faces.update(frame(640, 480, [(20 + 8 * i, 100, 40)]), i, i):
            ids.add(track.track_id)
    assert ids == {1} and faces.next_id == 2


def test_a_small_face_in_a_large_frame_is_found_by_the_tile_scan() -> None:
    scanner = Scoring()
    faces = finder(scanner, scan_period=10, scan_tile=640)
    image = frame(1920, 1080, [(1500, 800, 30)])  # only in the bottom-right tiles
    tiles = scan_tiles(1920, 1080, 640)
    found_at = next(i for i in range(30) if faces.update(image, i, i))
    assert found_at <= len(tiles) + 2  # a full scan, then the tiles round-robin, then two confirmations
    assert (1080, 1920) in scanner.shapes and (640, 640) in scanner.shapes  # whole frame once, tiles between


def test_a_face_missed_for_a_while_keeps_its_id_and_a_long_miss_ends_it() -> None:
    faces = finder(ScriptedFaces(), max_missed_frames=3)
    present, absent = frame(320, 240, [(100, 80, 40)]), frame(320, 240, [])
    for i in range(4):
        faces.update(present, i, i)
    for i in range(4, 7):  # 3 frames missed: still its face
        assert faces.update(absent, i, i) == []
    assert [t.track_id for t in faces.update(present, 7, 7)] == [1]
    for i in range(8, 13):
        faces.update(absent, i, i)
    assert faces.take_evicted() == [1] and faces.live_ids() == []


def test_an_unconfirmed_candidate_missed_once_is_dropped_silently() -> None:
    faces = finder(ScriptedFaces(), scan_period=100)
    faces.update(frame(320, 240, [(100, 80, 40)]), 0, 0)  # born from the scan, hidden
    faces.update(frame(320, 240, []), 1, 1)  # not re-detected: dropped
    assert faces.update(frame(320, 240, [(100, 80, 40)]), 2, 2) == []  # no scan on this frame: nothing to see
    assert faces.take_evicted() == [] and faces.next_id == 1


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((100, 100, 140, 140), (70.0, 70.0, 170.0, 170.0)),  # 2.5 x 40 = 100, centred
        ((0, 0, 40, 40), (0.0, 0.0, 100.0, 100.0)),  # pushed inside the frame
        ((300, 220, 320, 240), (270.0, 190.0, 320.0, 240.0)),  # at the far corner
    ],
)
def test_square_around_stays_inside_the_frame(box, expected) -> None:
    assert square_around(box, 2.5, 320, 240) == expected


def test_scan_tiles_cover_the_frame() -> None:
    assert scan_tiles(640, 480, 640) == [(0.0, 0.0, 640.0, 480.0)]
    tiles = scan_tiles(1920, 1080, 640)
    assert max(t[2] for t in tiles) == 1920 and max(t[3] for t in tiles) == 1080
    assert all(t[2] - t[0] == 640 and t[3] - t[1] == 640 for t in tiles)


def test_roi_crops_are_the_crops_the_model_saw_before() -> None:
    """The default roi mode (short-range model in the crops, its boxes mapped with SHORT_RANGE_BOX_MAPPING) cuts the
    faces the whole-frame pass cut: the boxes agree (measured: median IoU 0.93; the full-range model in the crops
    gives 0.86), so the 112x112 crops the model sees stay put."""
    from model.preprocess import crop_face, resize_crop
    from stream.config import Settings, with_overrides
    from stream.faces.cropper import build_cropper
    from stream.faces.tracker import iou_matrix
    from stream.records import Frame
    from tests.face_scenes import one_face_480p

    scene = one_face_480p(frames=30)
    boxes: dict[str, dict[int, tuple[float, ...]]] = {}
    for mode in ("full_frame", "roi"):
        cropper = build_cropper("cam", with_overrides(Settings(), {"faces.mode": mode}, "test"))
        boxes[mode] = {}
        for index, image in enumerate(scene.frames()):
            for crop in cropper.crops(Frame("cam", index, float(index), index / 30, image)):
                boxes[mode][index] = crop.track.box
        cropper.close()
    both = sorted(set(boxes["full_frame"]) & set(boxes["roi"]))
    assert len(both) >= 25
    ious = [float(iou_matrix(np.array([boxes["full_frame"][i]]), np.array([boxes["roi"][i]]))[0, 0]) for i in both]
    assert float(np.median(ious)) >= 0.9 and min(ious) >= 0.8
    frames = list(scene.frames())

    def model_crop(mode: str, index: int) -> np.ndarray:
        return resize_crop(crop_face(frames[index], boxes[mode][index]), 112).numpy().astype(np.int16)

    differences = [np.abs(model_crop("full_frame", i) - model_crop("roi", i)).mean() for i in both]
    assert float(np.median(differences)) < 20  # grey levels, mean over the 112x112x3 crop (measured: ~15)
