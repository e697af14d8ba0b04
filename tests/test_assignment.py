"""Camera → detector assignment on its own: no engine, no Ray."""

from __future__ import annotations

import pytest

from stream.cluster.assignment import Worker, assign

pytestmark = pytest.mark.fast  # make test-fast

CAMERAS = [f"cam{i}" for i in range(7)]


def test_cameras_spread_evenly_over_workers() -> None:
    result = assign(CAMERAS, [Worker("a", 4), Worker("b", 4), Worker("c", 4)])
    counts = sorted(list(result.placed.values()).count(w) for w in "abc")
    assert counts == [2, 2, 3] and set(result.placed) == set(CAMERAS)
    assert result.moved == frozenset(CAMERAS) and result.unplaced == ()


def test_a_dead_workers_cameras_move_and_no_other_camera_does() -> None:
    workers = [Worker("a", 4), Worker("b", 4), Worker("c", 4)]
    before = assign(CAMERAS, workers).placed
    lost = {c for c, w in before.items() if w == "b"}
    after = assign(CAMERAS, [w for w in workers if w.name != "b"], before)
    assert set(after.placed) == set(CAMERAS) and "b" not in after.placed.values()
    assert after.moved == lost
    assert all(after.placed[c] == before[c] for c in set(CAMERAS) - lost)


def test_added_and_removed_cameras_and_capacity() -> None:
    workers = [Worker("a", 2), Worker("b", 1)]
    first = assign(["x", "y"], workers)
    second = assign(["y", "z", "w", "v"], workers, first.placed)
    assert "x" not in second.placed and second.placed["y"] == first.placed["y"]
    assert len(second.placed) == 3 and second.unplaced == ("v",)
    assert "y" not in second.moved
    shrunk = assign(["y", "z", "w"], [Worker("a", 1), Worker("b", 1)], second.placed)
    assert len(shrunk.placed) == 2 and len(shrunk.unplaced) == 1  # over capacity: one has to wait


def test_the_same_input_gives_the_same_answer_and_bad_workers_are_refused() -> None:
    workers = [Worker("b", 3), Worker("a", 3)]
    assert assign(CAMERAS, workers) == assign(CAMERAS, workers)
    assert assign([], workers).placed == {}
    with pytest.raises(ValueError, match="unique"):
        assign(CAMERAS, [Worker("a", 1), Worker("a", 2)])
    with pytest.raises(ValueError, match="capacity"):
        Worker("a", -1)
