"""Evidence clips on their own: pre-roll plus post-roll frames, early finish, and the disk budget."""

from __future__ import annotations

import av
import numpy as np
import pytest

from stream.clips import ClipRecorder, ClipSettings


def crops(n: int, value: int = 120) -> np.ndarray:
    rng = np.random.default_rng(value)
    return rng.integers(0, 255, (n, 64, 64, 3), dtype=np.uint8)


def frame_count(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_pre_roll_then_post_roll_until_the_time_is_up(tmp_path) -> None:
    recorder = ClipRecorder(ClipSettings(directory=tmp_path, post_roll_s=1.0))
    path = recorder.start(7, "cam", 3, crops(10), now=100.0)
    assert recorder.recording("cam", 3)
    assert recorder.feed("cam", 3, crops(1)[0], now=100.5) is None
    assert recorder.feed("other", 3, crops(1)[0], now=100.5) is None  # no clip for that face
    finished = recorder.feed("cam", 3, crops(1)[0], now=101.0)
    assert finished is not None and finished.alert_id == 7 and finished.path == path
    assert finished.frames == 12 and frame_count(path) == 12
    assert not recorder.recording("cam", 3)


def test_a_face_that_leaves_finishes_its_clip_early(tmp_path) -> None:
    recorder = ClipRecorder(ClipSettings(directory=tmp_path, post_roll_s=60))
    recorder.start(1, "cam", 1, crops(4), now=0.0)
    finished = recorder.finish("cam", 1)
    assert finished is not None and frame_count(finished.path) == 4
    assert recorder.finish("cam", 1) is None


def test_oldest_clips_are_deleted_past_the_budget(tmp_path) -> None:
    recorder = ClipRecorder(ClipSettings(directory=tmp_path, post_roll_s=0, max_total_mb=0.05))
    paths = []
    for alert in range(6):
        recorder.start(alert, "cam", alert, crops(30, value=alert), now=0.0)
        paths.append(recorder.finish("cam", alert).path)
    remaining = sorted(tmp_path.glob("*.mp4"))
    assert paths[-1] in remaining  # the newest clip is always kept
    assert sum(p.stat().st_size for p in remaining) <= 0.05e6 or remaining == [paths[-1]]
    assert paths[0] not in remaining


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="even size"):
        ClipSettings(size=15)
