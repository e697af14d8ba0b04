"""One detector of a cluster, as a Ray actor: a `Detector` (its own model, engine and store session) whose loop runs on
a thread of the actor, taking cameras through the loop's command inbox.

The coordinator (stream/coordinator.py) wraps this class with `ray.remote` (`max_restarts=-1`: Ray starts it again
after a crash or on another node after its node died; a restarted actor is a new detector with a new session and no
cameras, and the coordinator gives it cameras again). Two calls: `report()` answers at once from the loop's published
snapshots (the coordinator's liveness probe), `set_cameras()` makes the running cameras those given, opening sources
(which may take a source's open timeout); the actor runs with `max_concurrency` > 1 so a probe never waits behind it.

This module imports nothing heavy at import time: the detector (torch, MediaPipe) loads in the actor's process.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stream.config.logs import configure_logging
from stream.text import one_line

if TYPE_CHECKING:
    from stream.config import Settings
    from stream.detector import Detector

log = logging.getLogger("deepfake_stream")
REMOVE_TIMEOUT_S = 10.0  # the loop answers a remove within an iteration; a wedged loop must not hang the actor


@dataclass(frozen=True)
class CameraReport:
    """One camera as its detector runs it: the source it was given, its stream's state and last error."""

    source: str
    state: str  # a StreamState value (live, reconnecting, ended, failed, …), or "failed" when it could not be opened
    detail: str | None = None


@dataclass(frozen=True)
class WorkerReport:
    """What a detector actor answers to a probe."""

    actor: str
    session_id: str  # a new one after every restart of the actor
    node_id: str  # the Ray node it runs on
    pid: int
    running: bool  # its loop thread is alive
    cameras: dict[str, CameraReport] = field(default_factory=dict)


class DetectorWorker:
    """A detector in a Ray actor. Build it through `ray.remote(DetectorWorker).options(...)`."""

    def __init__(self, name: str, settings: Settings, verbose: bool = False) -> None:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as run_stream.py: idle torch threads must not spin
        configure_logging(verbose, prefix=f"[{name}] ")
        import ray

        from stream.detector import Detector

        self.name = name
        self.node_id = ray.get_runtime_context().get_node_id()
        self.detector: Detector = Detector(settings)
        self._cameras: dict[str, str] = {}  # name -> source, as given (the stream id is the name)
        self._failed: dict[str, tuple[str, str]] = {}  # name -> (source, why it could not be opened)
        self._lock = threading.Lock()  # set_cameras calls run one at a time
        self._thread = threading.Thread(target=self._run, name="detector-loop", daemon=True)
        self._thread.start()
        log.info("%s: detector session %s on node %s", name, self.detector.session_id, self.node_id[:12])

    def _run(self) -> None:
        try:
            self.detector.run(serve=True)
        except Exception:
            log.exception("%s: the detector's loop stopped", self.name)

    def report(self) -> WorkerReport:
        """At once, from the loop's snapshots (no lock: a probe must not wait behind `set_cameras`)."""
        health = {h.stream_id: h for h in self.detector.health()}
        cameras = {
            name: CameraReport(source, str(health[name].state), health[name].last_error)
            if name in health
            else CameraReport(source, "starting")
            for name, source in dict(self._cameras).items()
        }
        for name, (source, why) in dict(self._failed).items():
            cameras.setdefault(name, CameraReport(source, "failed", why))
        return WorkerReport(
            self.name, self.detector.session_id, self.node_id, os.getpid(), self._thread.is_alive(), cameras
        )

    def set_cameras(self, cameras: Mapping[str, str]) -> WorkerReport:
        """Run exactly `cameras` (name -> source): stop those not listed or whose source changed, open the rest.
        A source that cannot be opened is reported `failed` with its one-line reason (the next call tries again)."""
        from stream.capture.references import SourceError

        with self._lock:
            for name, source in list(self._cameras.items()):
                if cameras.get(name) != source:
                    self._remove(name)
            self._failed = {name: failed for name, failed in self._failed.items() if cameras.get(name) == failed[0]}
            for name, source in cameras.items():
                if name in self._cameras:
                    continue
                try:
                    _, added = self.detector.add_source(source, name)
                    added.result(timeout=self.detector.settings.sources.open_timeout_s + REMOVE_TIMEOUT_S)
                except (SourceError, ValueError, RuntimeError, FutureTimeout) as error:
                    self._failed[name] = (source, one_line(error))
                    log.warning("%s: camera %s not started: %s", self.name, name, one_line(error))
                    continue
                self._cameras[name] = source
                self._failed.pop(name, None)
            return self.report()

    def _remove(self, name: str) -> None:
        del self._cameras[name]
        try:
            self.detector.pipeline.remove_source(name).result(timeout=REMOVE_TIMEOUT_S)
        except KeyError:
            pass  # its stream had already ended (a file at its end, a source that failed)
        except (RuntimeError, FutureTimeout) as error:
            log.warning("%s: camera %s: stop not confirmed: %s", self.name, name, one_line(error))

    def shutdown(self) -> str:
        """Stop the loop, end the session and close the store; the session id."""
        with self._lock:
            self.detector.stop()
            self._thread.join(30)
            self.detector.close()
            return self.detector.session_id
