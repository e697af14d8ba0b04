"""Evidence clips on their own: pre-roll plus post-roll frames, early finish, and the disk budget."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from stream.config import ClipSettings
from stream.loop.evidence_clips import ClipRecorder
from stream.records import Alert

pytestmark = pytest.mark.fast  # make test-fast


def crops(n: int, value: int = 120) -> np.ndarray:
    rng = np.random.default_rng(value)
    return rng.integers(0, 255, (n, 64, 64, 3), dtype=np.uint8)


def frame_count(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def alert(track_id: int = 3, t: float = 1_800_000_000.5) -> Alert:
    return Alert("cam/1", track_id, "turned_fake", t, 0.8, None)


def test_pre_roll_then_post_roll_until_the_time_is_up(tmp_path) -> None:
    recorder = ClipRecorder(ClipSettings(directory=tmp_path, post_roll_s=1.0))
    clip = recorder.start(alert(), crops(10), now=100.0)
    assert clip.path.parent == tmp_path and "cam_1-face3" in clip.path.name
    assert clip.feed(crops(1)[0], now=100.5) is None
    finished = clip.feed(crops(1)[0], now=101.0)
    assert finished is not None and finished.alert == alert() and finished.path == clip.path
    assert finished.frames == 12 and frame_count(clip.path) == 12
    assert clip.done and clip.feed(crops(1)[0], now=102.0) is None  # nothing is written after the end


def test_a_face_that_leaves_finishes_its_clip_early(tmp_path) -> None:
    recorder = ClipRecorder(ClipSettings(directory=tmp_path, post_roll_s=60))
    clip = recorder.start(alert(1), crops(4), now=0.0)
    finished = clip.finish()
    assert frame_count(finished.path) == 4
    assert clip.finish() == finished  # twice is harmless


def test_oldest_clips_are_deleted_past_the_budget(tmp_path) -> None:
    recorder = ClipRecorder(ClipSettings(directory=tmp_path, post_roll_s=0, max_total_mb=0.05))
    paths = []
    for n in range(6):
        clip = recorder.start(alert(n, t=1_800_000_000.0 + n), crops(30, value=n), now=0.0)
        paths.append(clip.finish().path)
    assert len(set(paths)) == 6
    remaining = sorted(tmp_path.glob("*.mp4"))
    assert paths[-1] in remaining  # the newest clip is always kept
    assert sum(p.stat().st_size for p in remaining) <= 0.05e6 or remaining == [paths[-1]]
    assert paths[0] not in remaining


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="even size"):
        ClipSettings(size=15)


def test_clips_go_beside_the_store_unless_told_otherwise(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    # No directory: a clips folder in the store's folder, absolute, whatever the current directory is later.
    assert ClipSettings().beside_store(Path("data/run.db")).directory == tmp_path / "data" / "clips"
    assert ClipSettings().beside_store(Path("/srv/x/run.db")).directory == Path("/srv/x/clips")
    # A directory given: as given, a relative one from the current directory at start.
    assert ClipSettings(directory=Path("mine")).beside_store(Path("/srv/x/run.db")).directory == tmp_path / "mine"
    assert ClipSettings(directory=Path("/abs")).beside_store(Path("run.db")).directory == Path("/abs")
    assert ClipSettings(post_roll_s=1.5).beside_store(Path("run.db")).post_roll_s == 1.5
    with pytest.raises(ValueError, match="beside_store"):
        ClipRecorder(ClipSettings())
