"""Tracker on synthetic detection sequences: crossing faces, misses, eviction, frame gaps, id reuse."""

from __future__ import annotations

import numpy as np
import pytest

from stream.faces.tracker import Tracker, iou_matrix
from stream.records import Detection, Track

pytestmark = pytest.mark.fast  # make test-fast


def det(x: float, y: float, size: float = 100.0) -> Detection:
    return Detection(box_xyxy=(x, y, x + size, y + size), score=0.9)


def ids_by_y(tracks: list[Track]) -> dict[float, int]:
    return {t.box[1]: t.track_id for t in tracks}


def test_iou_matrix_values() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], dtype=float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], dtype=float)
    iou = iou_matrix(a, b)
    assert iou.shape == (2, 3)
    np.testing.assert_allclose(iou[0], [1.0, 50 / 150, 0.0])
    np.testing.assert_allclose(iou[1], [0.0, 0.0, 0.0])  # a degenerate box overlaps nothing


def test_single_face_keeps_id_and_counts_age() -> None:
    tracker = Tracker("cam")
    for i in range(5):
        [track] = tracker.update([det(10 + 5 * i, 20)], frame_index=i)
        assert track == Track("cam", 1, (10 + 5 * i, 20, 110 + 5 * i, 120), age=i, last_seen=i)
    assert tracker.live_ids() == [1]


def test_crossing_faces_keep_ids_thanks_to_velocity() -> None:
    # A moves right at y=0, B moves left at y=30; they overlap partially while passing. Without prediction,
    # frame 4 matches A's last box better to B's detection (IoU 0.36 vs 0.33) and the ids swap.
    tracker = Tracker("cam")
    seen: dict[float, set[int]] = {0.0: set(), 30.0: set()}
    for i in range(9):
        tracks = tracker.update([det(50 * i, 0), det(325 - 50 * i, 30)], frame_index=i)
        assert len(tracks) == 2
        for y, track_id in ids_by_y(tracks).items():
            seen[y].add(track_id)
    assert seen == {0.0: {1}, 30.0: {2}}
    assert tracker.take_evicted() == []


def test_short_miss_keeps_id() -> None:
    tracker = Tracker("cam", max_missed=5)
    tracker.update([det(100, 100)], 0)
    tracker.update([det(100, 100)], 1)
    for i in range(2, 6):
        assert tracker.update([], i) == []
    assert tracker.live_ids() == [1]
    [track] = tracker.update([det(102, 100)], 6)
    assert (track.track_id, track.age, track.last_seen) == (1, 6, 6)
    assert tracker.take_evicted() == []


def test_long_miss_evicts_and_returning_face_gets_new_id() -> None:
    tracker = Tracker("cam", max_missed=3)
    tracker.update([det(100, 100)], 0)
    tracker.update([], 1)
    tracker.update([], 4)  # frames 1..3 missed: 3, still allowed
    assert tracker.take_evicted() == []
    assert tracker.live_ids() == [1]
    [track] = tracker.update([det(100, 100)], 5)  # frames 1..4 missed: 4 > max_missed, so the face is new
    assert track.track_id == 2 and track.age == 0
    assert tracker.take_evicted() == [1]
    assert tracker.take_evicted() == []  # taken once


def test_dropped_frames_count_towards_eviction() -> None:
    tracker = Tracker("cam", max_missed=15)
    tracker.update([det(0, 0)], 10)
    tracker.update([det(300, 300)], 27)  # no update in between (frames dropped): frames 11..26 unmatched, 16
    assert tracker.take_evicted() == [1]
    assert tracker.live_ids() == [2]


def test_velocity_is_scaled_by_frame_gap() -> None:
    # 30 px per frame; frames 3..5 were dropped. Frame 6's box does not overlap the last one (at frame 2),
    # only the box predicted 4 frames ahead.
    tracker = Tracker("cam")
    for i in (0, 1, 2, 6, 7, 9):
        [track] = tracker.update([det(30 * i, 0, size=60)], i)
        assert track.track_id == 1, f"frame {i}"
    assert track.age == 9


def test_far_detection_starts_new_id_and_ids_are_never_reused() -> None:
    tracker = Tracker("cam", max_missed=1)
    tracker.update([det(0, 0)], 0)
    tracks = tracker.update([det(5, 0), det(500, 500)], 1)
    assert [t.track_id for t in tracks] == [1, 2]
    assert tracker.update([], 5) == []
    assert sorted(tracker.take_evicted()) == [1, 2]
    tracks = tracker.update([det(5, 0), det(500, 500)], 6)
    assert [t.track_id for t in tracks] == [3, 4]


def test_update_returns_only_tracks_seen_this_frame_sorted() -> None:
    tracker = Tracker("cam")
    tracker.update([det(400, 0), det(0, 0)], 0)  # ids by detection order: (400,0) -> 1, (0,0) -> 2
    tracks = tracker.update([det(0, 0)], 1)
    assert [t.track_id for t in tracks] == [2]
    tracks = tracker.update([det(800, 0), det(0, 0), det(400, 0)], 2)
    assert [t.track_id for t in tracks] == [1, 2, 3]
    assert tracker.live_ids() == [1, 2, 3]


def test_low_iou_pair_is_rejected() -> None:
    tracker = Tracker("cam", iou_threshold=0.5)
    tracker.update([det(0, 0)], 0)
    [track] = tracker.update([det(40, 0)], 1)  # IoU 60/140 = 0.43 < 0.5
    assert track.track_id == 2


def test_evict_all_returns_pending_and_live_ids() -> None:
    tracker = Tracker("cam", max_missed=0)
    tracker.update([det(0, 0)], 0)
    tracker.update([det(500, 500)], 1)  # id 1 evicted (1 frame unmatched > 0), id 2 created
    assert tracker.evict_all() == [1, 2]
    assert tracker.live_ids() == [] and tracker.take_evicted() == []
    [track] = tracker.update([det(0, 0)], 2)
    assert track.track_id == 3


def test_frame_index_must_increase() -> None:
    tracker = Tracker("cam")
    tracker.update([], 5)
    with pytest.raises(ValueError, match="frame_index must increase"):
        tracker.update([], 5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stream_id": ""}, "stream_id"),
        ({"iou_threshold": 0.0}, "iou_threshold"),
        ({"iou_threshold": 1.5}, "iou_threshold"),
        ({"max_missed": -1}, "max_missed"),
        ({"max_missed": 2.5}, "max_missed"),
    ],
)
def test_invalid_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Tracker(**{"stream_id": "cam", **kwargs})


def test_max_missed_zero_keeps_a_face_seen_in_every_frame_and_ids_can_start_later() -> None:
    tracker = Tracker("cam", max_missed=0, first_id=7)
    for index in range(3):
        [track] = tracker.update([det(100 + index, 100)], index)
        assert track.track_id == 7
    tracker.update([], 3)
    [track] = tracker.update([det(103, 100)], 5)  # frames 3 and 4 missed
    assert track.track_id == 8 and tracker.take_evicted() == [7] and tracker.next_id == 9
