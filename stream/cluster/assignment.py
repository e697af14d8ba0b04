"""Camera → detector assignment: a pure function of (cameras, workers, the current assignment), so the coordinator
of a cluster of detectors (DESIGN.md, "Later, on paper: past one machine") can be tested without any engine.

Rules, in order: a camera stays where it is while its worker is alive and not over its capacity (moving a camera
costs a gap in its scores); cameras of a worker that left, new cameras and any over a worker's capacity go to the
worker with the most free capacity (ties: the fewest cameras, then the name); cameras no longer listed are dropped.
Cameras that fit nowhere are left unassigned and returned apart.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Worker:
    """A detector that can take cameras: its name and how many cameras it holds at most."""

    name: str
    capacity: int

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a worker needs a name")
        if self.capacity < 0:
            raise ValueError(f"worker {self.name}: capacity must be 0 or more, got {self.capacity}")


@dataclass(frozen=True)
class Assignment:
    """Which worker runs each camera, what moved compared with before, and what fits nowhere."""

    placed: dict[str, str]  # camera -> worker name
    moved: frozenset[str]  # cameras that were on another worker (or on none) before
    unplaced: tuple[str, ...]  # cameras no worker has room for, in the order given


def assign(
    cameras: Collection[str], workers: Collection[Worker], current: Mapping[str, str] | None = None
) -> Assignment:
    """Place `cameras` on `workers`, keeping `current` placements that are still valid (see the module's rules)."""
    by_name = {w.name: w for w in workers}
    if len(by_name) != len(workers):
        raise ValueError("worker names must be unique")
    wanted = list(dict.fromkeys(cameras))  # the order given, each camera once
    load: dict[str, list[str]] = {name: [] for name in by_name}
    previous = dict(current or {})
    homeless: list[str] = []
    for camera in wanted:
        home = previous.get(camera)
        if home in by_name and len(load[home]) < by_name[home].capacity:
            load[home].append(camera)
        else:
            homeless.append(camera)
    unplaced: list[str] = []
    for camera in homeless:
        free = [w for w in by_name.values() if len(load[w.name]) < w.capacity]
        if not free:
            unplaced.append(camera)
            continue
        target = min(free, key=lambda w: (-(w.capacity - len(load[w.name])), len(load[w.name]), w.name))
        load[target.name].append(camera)
    placed = {camera: name for name, held in load.items() for camera in held}
    moved = frozenset(c for c, name in placed.items() if previous.get(c) != name)
    return Assignment(placed, moved, tuple(unplaced))
