"""Per-face rings: capacity bound, oldest -> newest order after wraparound, windows, thumbnails, memory, the store."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream.config import VerdictPolicy
from stream.loop.face_state import FaceRegistry, RingShape
from stream.loop.rings import FaceRing
from stream.records import Frame

pytestmark = pytest.mark.fast  # make test-fast

D = 8


def crop(value: int, h: int = 40, w: int = 30) -> np.ndarray:
    image = np.full((h, w, 3), value, np.uint8)
    image[..., 0] = 255  # blue channel: BGR order must survive the resize
    return image


def push(ring: FaceRing, i: int, t_media: float | None = None) -> None:
    logits = np.array([i, -i], np.float32) if ring.has_logits else None
    ring.push(
        np.full(D, i, np.float32), logits, crop(i % 256), frame_index=100 + i, t_media=t_media, t_capture=1000.0 + i
    )


def test_push_until_full_then_wraps_oldest_first() -> None:
    ring = FaceRing(capacity=4, feature_dim=D, has_logits=True)
    assert len(ring) == 0 and not ring.full
    for i in range(3):
        push(ring, i, t_media=i / 10)
    assert len(ring) == 3 and not ring.full
    for i in range(3, 10):
        push(ring, i, t_media=i / 10)
    assert len(ring) == 4 and ring.full and ring.pushed_total == 10
    window = ring.window()
    np.testing.assert_array_equal(window.frame_indices, [106, 107, 108, 109])
    np.testing.assert_array_equal(window.features[:, 0], [6, 7, 8, 9])
    np.testing.assert_array_equal(window.logits, [[6, -6], [7, -7], [8, -8], [9, -9]])
    np.testing.assert_allclose(window.t_media, [0.6, 0.7, 0.8, 0.9])
    np.testing.assert_array_equal(window.t_capture, [1006, 1007, 1008, 1009])
    assert window.features.dtype == np.float32 and window.frame_indices.dtype == np.int64


def test_window_n_is_the_newest_n_and_a_copy() -> None:
    ring = FaceRing(capacity=5, feature_dim=D, has_logits=False)
    for i in range(7):
        push(ring, i)
    window = ring.window(2)
    assert len(window) == 2 and window.logits is None
    np.testing.assert_array_equal(window.frame_indices, [105, 106])
    assert window.features.shape == (2, D)
    window.features[:] = -1
    np.testing.assert_array_equal(ring.window(2).features[:, 0], [5, 6])  # the ring is untouched


def test_window_before_full_returns_what_there_is() -> None:
    ring = FaceRing(capacity=5, feature_dim=D, has_logits=True)
    with pytest.raises(ValueError, match="empty"):
        ring.window()
    push(ring, 0)
    push(ring, 1)
    np.testing.assert_array_equal(ring.window(5).frame_indices, [100, 101])
    with pytest.raises(ValueError, match=r"1\.\.5"):
        ring.window(6)
    with pytest.raises(ValueError, match=r"1\.\.5"):
        ring.window(0)


def test_t_media_none_is_nan() -> None:
    ring = FaceRing(capacity=3, feature_dim=D, has_logits=False)
    push(ring, 0, t_media=None)
    push(ring, 1, t_media=2.5)
    t_media = ring.window().t_media
    assert math.isnan(t_media[0]) and t_media[1] == 2.5


def test_thumbnails_resized_oldest_first_bgr_kept() -> None:
    ring = FaceRing(capacity=3, feature_dim=D, has_logits=False, thumb_size=16)
    assert ring.thumbnails().shape == (0, 16, 16, 3)
    for i in range(5):
        push(ring, 10 * i)
    thumbs = ring.thumbnails()
    assert thumbs.shape == (3, 16, 16, 3) and thumbs.dtype == np.uint8
    np.testing.assert_array_equal(thumbs[:, 0, 0, 0], [255, 255, 255])
    np.testing.assert_array_equal(thumbs[:, 0, 0, 2], [20, 30, 40])
    latest = ring.latest_thumbnail()
    assert latest.shape == (16, 16, 3) and latest[0, 0, 2] == 40


def test_crop_view_of_a_frame_is_accepted() -> None:
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[20:80, 30:90] = (1, 2, 3)
    ring = FaceRing(capacity=2, feature_dim=D, has_logits=False, thumb_size=8)
    ring.push(np.zeros(D, np.float32), None, frame[20:80, 30:90], frame_index=0, t_media=None, t_capture=0.0)
    np.testing.assert_array_equal(ring.latest_thumbnail()[4, 4], [1, 2, 3])


def test_nbytes_is_fixed_by_capacity() -> None:
    ring = FaceRing(capacity=20, feature_dim=2048, has_logits=True, thumb_size=64)
    expected = 20 * (4 * 2048 + 4 * 2 + 64 * 64 * 3 + 8 + 8 + 8)
    assert ring.nbytes == expected
    features = np.ones(2048, np.float32)
    for i in range(100):
        ring.push(features, np.zeros(2, np.float32), crop(1, 200, 150), i, None, float(i))
    assert ring.nbytes == expected
    assert FaceRing(20, 2048, has_logits=False, thumb_size=64).nbytes == expected - 20 * 8


def test_push_validates_shapes() -> None:
    ring = FaceRing(capacity=2, feature_dim=D, has_logits=True)
    good = {"crop_bgr": crop(0), "frame_index": 0, "t_media": None, "t_capture": 0.0}
    with pytest.raises(ValueError, match="features"):
        ring.push(np.zeros(D + 1, np.float32), np.zeros(2, np.float32), **good)
    with pytest.raises(ValueError, match="logits"):
        ring.push(np.zeros(D, np.float32), None, **good)
    with pytest.raises(ValueError, match="crop_bgr"):
        ring.push(np.zeros(D, np.float32), np.zeros(2, np.float32), np.zeros((4, 4), np.uint8), 0, None, 0.0)
    no_logits = FaceRing(capacity=2, feature_dim=D, has_logits=False)
    with pytest.raises(ValueError, match="has_logits=False"):
        no_logits.push(np.zeros(D, np.float32), np.zeros(2, np.float32), **good)
    assert len(ring) == 0 and len(no_logits) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [((0, D), "capacity"), ((1001, D), "capacity"), ((5, 0), "feature_dim"), ((5, D, 4), "thumb_size")],
)
def test_invalid_ring_arguments(args: tuple, message: str) -> None:
    capacity, feature_dim, *thumb = args
    with pytest.raises(ValueError, match=message):
        FaceRing(capacity, feature_dim, True, *thumb)


def frame(stream_id: str, index: int) -> Frame:
    return Frame(stream_id, index, 1000.0 + index, index / 30, np.zeros((8, 8, 3), np.uint8))


def test_registry_creates_once_evicts_once_and_keeps_summaries() -> None:
    registry = FaceRegistry(RingShape(capacity=3, feature_dim=D, has_logits=True, thumb_size=8), VerdictPolicy())
    crop = np.full((20, 20, 3), 128, np.uint8)
    face = registry.see(frame("a", 0), 1, crop)
    assert registry.see(frame("a", 1), 1, crop) is face
    assert face.pending_thumbnail is not None and face.pending_thumbnail[:2] == b"\xff\xd8"
    first = face.update()
    assert first.thumbnail_jpeg is not None and face.update().thumbnail_jpeg is None  # sent once
    for index in (0, 1):
        face.add_crop(frame("a", index), crop, np.zeros(D, np.float32), np.zeros(2, np.float32))
    assert len(face.ring) == 2 and face.crops == 2 and face.last_t_media == 1 / 30
    registry.see(frame("a", 1), 2, crop)
    registry.see(frame("b", 1), 1, crop)
    assert [(f.stream_id, f.track_id) for f in registry.live()] == [("a", 1), ("a", 2), ("b", 1)]
    assert registry.nbytes == 3 * face.ring.nbytes
    gone = registry.evict("a", 1)
    assert gone is face and gone.gone and gone.update().state == "gone"
    assert registry.evict("a", 1) is None  # evicting twice is harmless
    assert registry.see(frame("a", 5), 1, crop) is not face  # a fresh face with an empty ring
    assert [f.track_id for f in registry.evict_stream("a")] == [1, 2]
    assert [(f.stream_id, f.track_id) for f in registry.live()] == [("b", 1)]
    summaries = registry.summaries()
    assert [(s.stream_id, s.track_id, s.crops) for s in summaries] == [
        ("a", 1, 2),
        ("a", 1, 0),
        ("a", 2, 0),
        ("b", 1, 0),
    ]
    assert summaries[0].frames_scored == 0 and summaries[0].mean_p_fake is None
