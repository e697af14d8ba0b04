"""Cluster benchmark: how long a Ray cluster of detectors takes to start scoring, and how long a dead node's cameras
take to be scored again on another node.

A real `ray.cluster_utils.Cluster` on this machine (a head and `--workers` worker nodes, one CPU and one detector
actor each), `python -m stream.cluster` joining it, demo cameras (two per node by default), a throwaway PostgreSQL
server (tests/pg_server.py), all inside a private network namespace (needs root, as the tests do). The last worker
node is taken down twice, in two rounds: SIGKILL of all its processes (its connections are refused at once), and
SIGSTOP of all of them (a machine that drops off the network: nothing answers, nothing is refused). The times come
from the store and the coordinator's status rows:

- cluster start: `Cluster` with its nodes up;
- first scores: from then until every camera has a score (the coordinator starting, the actors importing torch and
  building their engines, the first window filling);
- moved: from the kill until every camera of the dead node is `live` on another detector;
- scored again: from the kill until each of those cameras has a score in its new detector's session;
- gap: each moved camera's last score on the dead node to its first on the new one.

    .venv/bin/python bench/cluster.py [--workers 1] [--cameras-per-node 1]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cluster_run import ClusterRun, scores_of, scoring_gap, wait_for
from tests.netns import private_network
from tests.pg_server import postgres_server, server_missing


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def one_round(folder: Path, db: str, workers: int, per_node: int, how: str) -> dict[str, float]:
    """Start a cluster, wait for every camera's first score, take its last worker node down `how` (kill | freeze),
    and time the move; the numbers of the table's row."""
    cameras = {f"cam{i}": "demo" for i in range((workers + 1) * per_node)}
    run = ClusterRun(folder, db, cameras, workers=workers)
    began = time.monotonic()
    with run:
        cluster_s = time.monotonic() - began
        rows = wait_for("every camera live", run.live, 600, run.log)

        def all_scored() -> bool:
            with run.reader() as reader:
                return all(r.session_id and scores_of(reader, r.session_id, r.camera) for r in rows)

        wait_for("every camera scored", all_scored, 300, run.log)
        first_scores_s = time.monotonic() - run.started_at - cluster_s
        victim = run.nodes[-1]
        moving = [r for r in rows if run.node_of(r) is victim]
        if not moving:
            raise RuntimeError("no camera ran on the last worker node")
        down_at = time.monotonic()
        if how == "kill":
            run.remove_node(victim)
        else:
            run.freeze_node(victim)

        def moved() -> dict[str, str] | None:
            now = {r.camera: r for r in run.live() or []}
            landed = {m.camera: now[m.camera] for m in moving if m.camera in now and now[m.camera].actor != m.actor}
            return {c: r.session_id for c, r in landed.items() if r.session_id} if len(landed) == len(moving) else None

        sessions = wait_for("the dead node's cameras live elsewhere", moved, 300, run.log)
        moved_s = time.monotonic() - down_at
        with run.reader() as reader:
            gaps = [
                wait_for(
                    f"{m.camera} scored again",
                    lambda m=m: scoring_gap(reader, m.camera, m.session_id, sessions[m.camera]),
                    300,
                    run.log,
                )[0]
                for m in moving
            ]
        scored_again_s = time.monotonic() - down_at
        code = run.stop()
    if code != 0:
        raise RuntimeError(f"the coordinator exited with {code}: {run.log_text()[-2000:]}")
    return {
        "cluster": cluster_s,
        "first": first_scores_s,
        "moved": moved_s,
        "again": scored_again_s,
        "gap": statistics.median(gaps),
        "gap_max": max(gaps),
        "cameras": len(cameras),
        "moving": len(moving),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1, help="worker nodes beside the head (default 1)")
    parser.add_argument("--cameras-per-node", type=int, default=1, help="demo cameras per node (default 1)")
    args = parser.parse_args()
    missing = server_missing()
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    results = {}
    with postgres_server() as server, private_network():
        for how in ("kill", "freeze"):
            with tempfile.TemporaryDirectory() as folder:
                db = server.create_database(f"bench_cluster_{how}")
                results[how] = one_round(Path(folder), db, args.workers, args.cameras_per_node, how)
    first = results["kill"]
    print(f"CPU: {cpu_model()}; {args.workers + 1} nodes, {first['cameras']:.0f} demo cameras, window 10, onnxruntime")
    print("| node lost by | cluster start | first scores | its cameras live elsewhere | scored again | scoring gap |")
    print("|---|---|---|---|---|---|")
    names = {"kill": "SIGKILL (processes die)", "freeze": "SIGSTOP (machine silent)"}
    for how, r in results.items():
        print(
            f"| {names[how]} | {r['cluster']:.1f} s | {r['first']:.1f} s | {r['moved']:.1f} s | {r['again']:.1f} s | "
            f"{r['gap']:.1f} s (max {r['gap_max']:.1f}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
