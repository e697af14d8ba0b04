"""The coordinator of a cluster of detectors: it keeps the cameras of cameras.yaml running on detector actors
(stream/cluster_worker.py), moves a dead actor's or node's cameras to live ones, and writes where each camera runs to
the store (`cluster_status`), so a dashboard can show it.

It runs in the `python -m stream.cluster` process (the Ray driver, which also owns the cameras file) as a loop of
ticks (`tick_s`, 0.5 s). Each tick:
1. the cameras file is read again when it changed (a file that no longer parses keeps the last good list, with one
   line saying why);
2. every actor is probed (`report()`, one call in flight per actor): an actor is down when the call fails, when it
   did not answer `max_misses` probes in a row (`probe_timeout_s` each), or when Ray's node list says its node died;
   it is up again when it answers (a restarted actor answers with a new session: a new detector with no cameras);
3. `stream.cluster.assignment.assign` places the cameras on the actors that are up (a camera stays where it runs; a down
   actor's cameras, new ones and any over `max_cameras` go to the freest actor); the first placement waits until
   every actor has started (or `start_grace_s`), so the cameras start spread over all of them;
4. each up actor whose cameras differ from what it was last sent gets `set_cameras()` (at most one in flight per
   actor; a camera that failed to open is sent again every `retry_s`), so a slow actor that was taken for dead
   gives its cameras up when it answers again and no camera runs twice for long;
5. the status rows go to the store when they changed (and every `status_every_s` anyway, so their time says the
   coordinator is alive).

Every actor has its own store session, and scores are keyed by session: a camera that moves goes on in the new
actor's session under the same stream id, and nothing written before is touched.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError

from stream.capture.references import redact
from stream.cluster.assignment import Worker, assign
from stream.cluster.cameras import CameraListError, CameraPlan, load_cameras
from stream.cluster.worker import DetectorWorker, WorkerReport
from stream.config import Settings
from stream.records import ClusterCamera
from stream.store import ScoreWriter, StoreError
from stream.store.keys import new_session_id
from stream.text import one_line

log = logging.getLogger("deepfake_stream")
RAY_ERROR_LIMIT = 160  # characters: Ray's error messages run to paragraphs


class ClusterError(Exception):
    """The cluster cannot run at all (no detector could start); the message is one line for the user."""


@dataclass(frozen=True)
class CoordinatorTiming:
    tick_s: float = 0.5  # how often the coordinator looks at the cluster
    probe_timeout_s: float = 2.0  # a probe not answered in this long is a miss ...
    max_misses: int = 2  # ... and this many misses in a row make an actor down
    retry_s: float = 10.0  # a camera that could not be opened is tried again after this long
    status_every_s: float = 5.0  # status rows are written at least this often
    shutdown_timeout_s: float = 60.0  # each actor gets this long to end its session
    start_grace_s: float = 180.0  # cameras are placed once every actor has started, or after this long anyway

    def __post_init__(self) -> None:
        timings = (self.tick_s, self.probe_timeout_s, self.retry_s, self.status_every_s, self.shutdown_timeout_s)
        if min(*timings, self.start_grace_s) <= 0:
            raise ValueError("coordinator timings must be positive seconds")
        if self.max_misses < 1:
            raise ValueError(f"max_misses must be at least 1, got {self.max_misses}")


@dataclass
class _Actor:
    """The coordinator's view of one detector actor (touched only by the coordinator's thread)."""

    name: str
    handle: Any
    state: str = "starting"  # starting | up | down | failed (its constructor raised: Ray does not restart it)
    failure: str | None = None
    report: WorkerReport | None = None
    probe: Any = None  # the report() call in flight
    probe_sent: float = 0.0
    misses: int = 0
    sync: Any = None  # the set_cameras() call in flight
    sent: dict[str, str] | None = None  # what set_cameras() was last given (None: send again)
    sent_at: float = 0.0
    sessions: list[str] = field(default_factory=list)  # every session it had (a new one per restart)
    down_since: float | None = None


@dataclass
class _Placement:
    actor: str | None
    state: str
    since: float


class Coordinator:
    """Keeps the cameras file's cameras running on `actors` detector actors; `run()` until `stop()`."""

    def __init__(
        self,
        cameras_path: Path,
        plan: CameraPlan,
        settings: Settings,
        writer: ScoreWriter | None,
        actors: int,
        timing: CoordinatorTiming | None = None,
        clock: Callable[[], float] = time.time,
        detector_flags: Mapping[str, Any] | None = None,
        verbose: bool = False,
    ) -> None:
        """`plan`: the cameras file as read, with `detector_flags` (the command line's resource flags) over its
        `detector:` section; `verbose`: the detectors log other libraries' INFO lines too."""
        if actors < 1:
            raise ValueError(f"a cluster needs at least one detector actor, got {actors}")
        self.cameras_path = Path(cameras_path)
        self.plan = plan
        self.settings = settings
        self.writer = writer
        self.timing = timing or CoordinatorTiming()
        self._detector_flags = dict(detector_flags or {})
        self.cluster_id = new_session_id(clock())
        self._clock = clock
        self._started = time.monotonic()
        self._mtime = self._file_mtime()
        self._stop = threading.Event()
        self._placed: dict[str, str] = {}  # camera -> actor
        self._status: dict[str, _Placement] = {}
        self._written: dict[str, tuple[Any, ...]] = {}
        self._written_at = 0.0
        self._node_addresses: dict[str, str] = {}
        self.moves: list[tuple[str, str | None, str, float]] = []  # (camera, from, to, when): for logs and tests
        resources = plan.detector
        remote = ray.remote(DetectorWorker).options(
            num_cpus=resources.num_cpus,
            num_gpus=resources.num_gpus,
            max_restarts=-1,
            max_task_retries=0,
            max_concurrency=4,
            scheduling_strategy="SPREAD",
        )
        self.actors = [
            _Actor(f"detector-{i}", remote.remote(f"detector-{i}", settings, verbose)) for i in range(actors)
        ]

    # ---- the loop ---------------------------------------------------------------------------------------------
    def run(self, duration_s: float | None = None) -> None:
        """Tick until `stop()` (or `duration_s`), then stop every actor."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        try:
            while not self._stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                began = time.monotonic()
                self.tick()
                self._stop.wait(max(0.0, self.timing.tick_s - (time.monotonic() - began)))
        finally:
            self.shutdown()

    def stop(self) -> None:
        self._stop.set()

    def tick(self) -> None:
        """One look at the cluster (see the module's steps); ClusterError when no detector could start."""
        now = self._clock()
        self._reload()
        alive_nodes = self._alive_nodes()
        for actor in self.actors:
            self._probe(actor, alive_nodes, now)
        if all(a.state == "failed" for a in self.actors):
            raise ClusterError(f"no detector could start: {self.actors[0].failure}")
        self._place(now)
        for actor in self.actors:
            if actor.state == "up":
                self._sync(actor, now)
        self._update_status(now)
        self._write_status(now)

    # ---- 1: the cameras file ----------------------------------------------------------------------------------
    def _file_mtime(self) -> float | None:
        try:
            return self.cameras_path.stat().st_mtime_ns
        except OSError:
            return None

    def _reload(self) -> None:
        mtime = self._file_mtime()
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            plan = load_cameras(self.cameras_path)
        except CameraListError as error:
            log.warning("cluster: %s; keeping the %d camera(s) listed before", error, len(self.plan.cameras))
            return
        if replace(plan.detector, **self._detector_flags) != self.plan.detector:
            log.warning("cluster: %s: detector: takes effect only when the cluster starts again", self.cameras_path)
        before, after = self.plan.sources(), plan.sources()
        added = [n for n in after if n not in before]
        removed = [n for n in before if n not in after]
        changed = [n for n in after if n in before and before[n] != after[n]]
        self.plan = replace(plan, detector=self.plan.detector)
        log.info(
            "cluster: %s changed: %d camera(s) added%s, %d removed%s, %d with a new source%s",
            self.cameras_path,
            len(added),
            f" ({', '.join(added)})" if added else "",
            len(removed),
            f" ({', '.join(removed)})" if removed else "",
            len(changed),
            f" ({', '.join(changed)})" if changed else "",
        )

    # ---- 2: probes --------------------------------------------------------------------------------------------
    def _alive_nodes(self) -> set[str] | None:
        """Ids of the nodes Ray lists as alive (None when the list could not be had: nothing is concluded)."""
        try:
            nodes = ray.nodes()
        except RayError:
            return None
        self._node_addresses.update({n["NodeID"]: n.get("NodeManagerAddress", "?") for n in nodes})
        return {n["NodeID"] for n in nodes if n.get("Alive")}

    def _probe(self, actor: _Actor, alive_nodes: set[str] | None, now: float) -> None:
        if actor.state == "failed":
            return
        if actor.sync is not None:
            ready, _ = ray.wait([actor.sync], timeout=0)
            if ready:
                sync, actor.sync = actor.sync, None
                try:
                    self._answered(actor, ray.get(sync), now)
                except RayError as error:
                    actor.sent = None
                    self._down(actor, f"set_cameras failed: {one_line(error, RAY_ERROR_LIMIT)}", now)
        if actor.probe is None:
            actor.probe, actor.probe_sent = actor.handle.report.remote(), time.monotonic()
        ready, _ = ray.wait([actor.probe], timeout=0)
        if ready:
            probe, actor.probe = actor.probe, None
            try:
                self._answered(actor, ray.get(probe), now)
            except RayActorError as error:
                if error.actor_init_failed:
                    self._failed(actor, error)
                else:
                    self._down(actor, one_line(error, RAY_ERROR_LIMIT), now)
            except RayError as error:
                self._down(actor, one_line(error, RAY_ERROR_LIMIT), now)
        elif time.monotonic() - actor.probe_sent >= self.timing.probe_timeout_s:
            actor.misses += 1
            actor.probe = None  # a probe that never returns (a dead node) is not waited on for ever
            if actor.state == "up" and actor.misses >= self.timing.max_misses:
                self._down(actor, f"no answer to {actor.misses} probes", now)
        if (
            actor.state == "up"
            and alive_nodes is not None
            and actor.report is not None
            and actor.report.node_id not in alive_nodes
        ):
            self._down(actor, f"its node {self._node_name(actor.report.node_id)} died", now)

    def _answered(self, actor: _Actor, report: WorkerReport, now: float) -> None:
        actor.misses = 0
        if actor.report is not None and report.session_id != actor.report.session_id:
            log.info("cluster: %s was restarted by Ray (new session %s)", actor.name, report.session_id)
            actor.sent, actor.sync = None, None  # a new detector runs nothing yet
            self._end_session(actor.report.session_id, now)
        if report.session_id not in actor.sessions:
            actor.sessions.append(report.session_id)
        actor.report = report
        if actor.state != "up":
            was = actor.state
            actor.state, actor.down_since = "up", None
            node = self._node_name(report.node_id)
            log.info("cluster: %s is up on node %s (%s)", actor.name, node, "back" if was == "down" else "started")

    def _down(self, actor: _Actor, why: str, now: float) -> None:
        if actor.state == "down":
            return
        # What it was told and any call still in flight are forgotten: when it answers again it is told afresh.
        actor.state, actor.down_since, actor.sent, actor.sync = "down", now, None, None
        log.warning("cluster: %s is down (%s): its cameras go to the other detectors", actor.name, why)

    def _failed(self, actor: _Actor, error: RayActorError) -> None:
        """Its detector could not be built (a checkpoint, store or engine error): the reason is the last line of the
        constructor's error, which is the detector's own one-line message."""
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        # The last line is `module.ErrorType: message`: the message is what the user needs.
        reason = re.sub(r"^[\w.]+: ", "", lines[-1]) if lines else type(error).__name__
        actor.state, actor.failure, actor.sent, actor.sync, actor.probe = "failed", reason, None, None, None
        log.error("cluster: %s could not start: %s", actor.name, reason)

    def _end_session(self, session_id: str, now: float) -> None:
        """A restarted actor's earlier session ended when its process died: say so in the store."""
        if self.writer is None:
            return
        try:
            self.writer.end_session(session_id, now)
        except StoreError as error:
            log.warning("cluster: %s", error)

    # ---- 3: placement -----------------------------------------------------------------------------------------
    def _place(self, now: float) -> None:
        starting = any(a.state == "starting" for a in self.actors)
        if starting and not self._placed and time.monotonic() - self._started < self.timing.start_grace_s:
            return  # the first placement waits for every actor, so the cameras are spread over all of them
        up = [Worker(a.name, self.plan.detector.max_cameras) for a in self.actors if a.state == "up"]
        before = dict(self._placed)
        result = assign([c.name for c in self.plan.cameras], up, before)
        self._placed = dict(result.placed)
        for camera in sorted(result.moved):
            self.moves.append((camera, before.get(camera), self._placed[camera], now))
            if before.get(camera) is not None:
                log.info("cluster: camera %s moves from %s to %s", camera, before[camera], self._placed[camera])

    # ---- 4: telling actors what to run -----------------------------------------------------------------------
    def _sync(self, actor: _Actor, now: float) -> None:
        if actor.sync is not None:
            return
        sources = self.plan.sources()
        target = {c: sources[c] for c, name in self._placed.items() if name == actor.name}
        running = actor.report.cameras if actor.report is not None else {}
        failing = any(c not in running or running[c].state == "failed" for c in target)
        if target == actor.sent and not (failing and now - actor.sent_at >= self.timing.retry_s):
            return
        actor.sync, actor.sent, actor.sent_at = actor.handle.set_cameras.remote(target), target, now

    # ---- 5: status --------------------------------------------------------------------------------------------
    def _node_name(self, node_id: str) -> str:
        address = self._node_addresses.get(node_id)
        return f"{address} ({node_id[:8]})" if address else node_id[:8]

    def _update_status(self, now: float) -> None:
        actors = {a.name: a for a in self.actors}
        current: dict[str, _Placement] = {}
        for camera in self.plan.cameras:
            name = self._placed.get(camera.name)
            if name is None:
                up = any(a.state == "up" for a in self.actors)
                state = "unplaced" if up else "waiting"
            else:
                report = actors[name].report
                seen = report.cameras.get(camera.name) if report is not None else None
                state = seen.state if seen is not None and seen.source == camera.source else "assigned"
            previous = self._status.get(camera.name)
            if previous is not None and (previous.actor, previous.state) == (name, state):
                current[camera.name] = previous
            else:
                current[camera.name] = _Placement(name, state, now)
        self._status = current

    def status(self) -> list[ClusterCamera]:
        """Where each camera runs now, as the store keeps it."""
        actors = {a.name: a for a in self.actors}
        rows = []
        for camera in self.plan.cameras:
            placement = self._status.get(camera.name) or _Placement(None, "waiting", self._clock())
            actor = actors.get(placement.actor) if placement.actor else None
            report = actor.report if actor is not None else None
            seen = report.cameras.get(camera.name) if report is not None else None
            detail = seen.detail if seen is not None else None
            if placement.state == "unplaced":
                detail = f"no detector has room (max_cameras {self.plan.detector.max_cameras} each)"
            rows.append(
                ClusterCamera(
                    cluster_id=self.cluster_id,
                    camera=camera.name,
                    source=redact(camera.source),
                    actor=placement.actor,
                    node=self._node_name(report.node_id) if report is not None else None,
                    session_id=report.session_id if report is not None else None,
                    state=placement.state,
                    since=placement.since,
                    t=self._clock(),
                    detail=detail,
                )
            )
        return rows

    def _write_status(self, now: float, force: bool = False) -> None:
        if self.writer is None:
            return
        rows = self.status()
        keys = {r.camera: (r.actor, r.node, r.session_id, r.state, r.since, r.detail, r.source) for r in rows}
        if not force and keys == self._written and now - self._written_at < self.timing.status_every_s:
            return
        try:
            self.writer.write_cluster_status(self.cluster_id, rows)
        except StoreError as error:
            log.warning("cluster: status not written: %s", error)
            return
        self._written, self._written_at = keys, now

    # ---- the end ----------------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Each actor that answers ends its session and closes its store; the rest are killed (their last session
        is marked ended); the status rows say `stopped`, and the log says what was stopped."""
        running = self.status()
        log.info("cluster: stopping %d detector(s) and %d camera(s)", len(self.actors), len(running))
        calls = {a.name: a.handle.shutdown.remote() for a in self.actors if a.state not in ("down", "failed")}
        deadline = time.monotonic() + self.timing.shutdown_timeout_s
        for actor in self.actors:
            if actor.name in calls:
                try:
                    ray.get(calls[actor.name], timeout=max(0.1, deadline - time.monotonic()))
                except (RayError, TimeoutError) as error:
                    log.warning("cluster: %s did not stop cleanly: %s", actor.name, one_line(error, RAY_ERROR_LIMIT))
                    if actor.report is not None:
                        self._end_session(actor.report.session_id, self._clock())
            elif actor.report is not None:  # down: its process is gone, and its session with it
                log.info(
                    "cluster: %s is %s: its session %s is marked ended",
                    actor.name,
                    actor.state,
                    actor.report.session_id,
                )
                self._end_session(actor.report.session_id, self._clock())
            ray.kill(actor.handle, no_restart=True)
        now = self._clock()
        self._status = {c.name: _Placement(None, "stopped", now) for c in self.plan.cameras}
        self._write_status(now, force=True)
        sessions = [(a.name, a.report.session_id if a.report is not None else None) for a in self.actors]
        for line in stopped_lines(sessions, running):
            log.info(line)


def stopped_lines(actors: Sequence[tuple[str, str | None]], rows: Sequence[ClusterCamera]) -> list[str]:
    """What a cluster stopped: one line per detector (its session, and each camera it ran with the camera's state
    then), and one for the cameras that ran nowhere."""
    lines = []
    for name, session in actors:
        cameras = ", ".join(f"{r.camera} ({r.state})" for r in rows if r.actor == name) or "no cameras"
        lines.append(f"cluster: stopped {name}{f' (session {session})' if session else ''}: {cameras}")
    nowhere = [f"{r.camera} ({r.state})" for r in rows if r.actor is None]
    if nowhere:
        lines.append(f"cluster: stopped, and not running anywhere: {', '.join(nowhere)}")
    return lines


def cluster_resources() -> Mapping[str, float]:
    """The cluster's total resources, as Ray counts them."""
    return ray.cluster_resources()
