"""A real Ray cluster on this machine running `python -m stream.cluster`, for tests/test_cluster.py and
bench/cluster.py: `ray.cluster_utils.Cluster` (a head and worker nodes, small CPU resources, Ray's dashboard off),
the coordinator as a subprocess joining it with `--address`, and the store read while it runs.

Start it inside `tests.netns.private_network()`: Ray's processes and the coordinator are started from the calling
thread and stay in its private network namespace. `RAY_USAGE_STATS_ENABLED=0` is set before Ray is imported.
Everything it started is always stopped, also when the caller fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import av
import yaml

from stream.records import ClusterCamera, WindowScore
from stream.store import ScoreReader, open_reader
from tests.media import one_face

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
# Ray's own node health check made fast (a dead node marked dead in ~1.5 s, not Ray's default ~15 s): without it
# the coordinator's probes notice the dead actor first.
FAST_FAILURE = {"health_check_period_ms": 500, "health_check_failure_threshold": 3, "health_check_timeout_ms": 500}


def face_video(path: Path, seconds: int = 10, fps: int = 15) -> Path:
    """An H.264 MP4 like a camera's (no B-frames, a key frame every second) of one face drifting right."""
    scene = one_face()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"g": str(fps), "bf": "0"})
        first = scene(0)
        stream.width, stream.height, stream.pix_fmt = first.shape[1], first.shape[0], "yuv420p"
        for i in range(seconds * fps):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(scene(i % 120), format="bgr24")))
        container.mux(stream.encode())
    return path


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float, log: Path | None = None) -> T:
    """Poll `check` until it gives something; AssertionError naming `what` (and the coordinator's log tail)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    tail = ""
    if log is not None and log.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}\n{tail}")


class ClusterRun:
    """A head and `workers` worker nodes (each `cpus` CPUs, one detector actor each), and the coordinator."""

    def __init__(
        self,
        folder: Path,
        db: str,
        cameras: dict[str, str],
        workers: int = 1,
        cpus: int = 1,
        window: int = 10,
        fast_failure: bool = False,
    ) -> None:
        self.folder, self.db, self.workers, self.cpus = folder, db, workers, cpus
        self.fast_failure = fast_failure
        self.cameras_file = folder / "cameras.yaml"
        self.config = folder / "detector.yaml"
        self.log = folder / "coordinator.log"
        self.window = window
        self.write_cameras(cameras)
        # Light detectors: no clips, few annotated frames, a short window, the plain ONNX Runtime engine.
        settings = {"clips": {"enabled": False}, "pipeline": {"annotate_fps": 1, "status_interval_s": 30}}
        self.config.write_text(yaml.safe_dump(settings))
        self.cluster: Any = None
        self.nodes: list[Any] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.frozen: list[Any] = []

    def write_cameras(self, cameras: dict[str, str]) -> None:
        entries = [{"name": name, "source": source} for name, source in cameras.items()]
        plan = {"detector": {"num_cpus": self.cpus, "max_cameras": len(cameras) or 1}, "cameras": entries}
        temporary = self.cameras_file.with_suffix(".tmp")
        temporary.write_text(yaml.safe_dump(plan))
        temporary.replace(self.cameras_file)  # the coordinator never reads half a file

    def start(self) -> None:
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        from ray.cluster_utils import Cluster

        self.started_at = time.monotonic()
        head = {**self._node, "include_dashboard": False}
        head |= {"_system_config": FAST_FAILURE} if self.fast_failure else {}
        self.cluster = Cluster(initialize_head=True, head_node_args=head)
        self.nodes = [self.cluster.head_node]
        for _ in range(self.workers):
            self.add_node()
        self.cluster.wait_for_nodes()
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "stream.cluster", str(self.cameras_file), "--address", self.cluster.address]
        command += ["--db", self.db, "--config", str(self.config), "--window", str(self.window)]
        command += ["--cpu-engine", "onnxruntime", "--detectors", str(len(self.nodes))]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)

    @property
    def _node(self) -> dict[str, Any]:
        return {"num_cpus": self.cpus, "node_ip_address": "127.0.0.1"}

    def add_node(self) -> Any:
        """One more worker node, like the others."""
        node = self.cluster.add_node(**self._node)
        self.nodes.append(node)
        return node

    def reader(self) -> ScoreReader:
        return open_reader(self.db)

    def status(self) -> list[ClusterCamera]:
        with self.reader() as reader:
            return reader.cluster_status()

    def live(self) -> list[ClusterCamera] | None:
        """The status rows when every camera runs (`live`), else None."""
        rows = self.status()
        return rows if rows and all(r.state == "live" for r in rows) else None

    def node_of(self, row: ClusterCamera) -> Any:
        """The Ray node (of `self.nodes`) a status row names."""
        assert row.node is not None
        prefix = row.node.rsplit("(", 1)[-1].rstrip(")")
        [node] = [n for n in self.nodes if n.node_id.startswith(prefix)]
        return node

    def remove_node(self, node: Any) -> None:
        """Kill a node at once, as a machine that crashes: its workers (the detector actor) and then its own processes
        (raylet, …), all with SIGKILL. (Ray's `remove_node` alone kills the node's processes, and its workers only
        notice a moment later, still writing meanwhile.)"""
        roots = {info.process.pid for infos in node.all_processes.values() for info in infos}
        for pid in descendants(roots):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.cluster.remove_node(node, allow_graceful=False)
        self.nodes.remove(node)

    def freeze_node(self, node: Any) -> None:
        """Stop every process of a node (SIGSTOP), its workers too, as a machine that drops off the network would:
        its connections stay open and nothing answers. `stop()` removes it."""
        roots = {info.process.pid for infos in node.all_processes.values() for info in infos}
        for pid in roots | descendants(roots):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        self.frozen.append(node)

    def stop(self, timeout_s: float = 90.0) -> int | None:
        """SIGTERM the coordinator (it stops every detector), then the cluster; the coordinator's exit status."""
        code = None
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    code = self.process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(10)
            elif self.process is not None:
                code = self.process.returncode
        finally:
            for node in self.frozen:
                roots = {info.process.pid for infos in node.all_processes.values() for info in infos}
                for pid in roots | descendants(roots):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.cluster.remove_node(node, allow_graceful=False)
            self.frozen.clear()
            if self.cluster is not None:
                self.cluster.shutdown()
                self.cluster = None
        return code

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> ClusterRun:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def descendants(pids: set[int]) -> set[int]:
    """Every process below `pids` (children, their children, …), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def scoring_gap(reader: ScoreReader, camera: str, before: str, after: str) -> tuple[float, int, int] | None:
    """Seconds between `camera`'s last score in session `before` and its first in session `after` (by the time each
    was scored), and how many scores each session holds; None until both have scores."""
    old = scores_of(reader, before, camera)
    new = scores_of(reader, after, camera)
    if not old or not new:
        return None
    return min(s.t_scored for s in new) - max(s.t_scored for s in old), len(old), len(new)


def scores_of(reader: ScoreReader, session_id: str, camera: str) -> list[WindowScore]:
    """Every score of `camera` in a session, face by face."""
    tracks = {f.track_id for f in reader.faces(session_id, camera)}
    return [s for track in sorted(tracks) for s in reader.scores(session_id, camera, track)]
