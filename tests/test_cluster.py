"""`python -m stream.cluster` on a real Ray cluster (`ray.cluster_utils.Cluster`: a head and a worker node on this
machine, one CPU and one detector actor each) writing to a real PostgreSQL server, inside a private network
namespace: an RTSP camera (tests/rtsp_server.py, a face video) and the built-in demo camera are spread over the two
detectors; the worker node is killed mid-run and its camera is scored again on the head's detector, in that
detector's session, with every score written before kept; an edit of cameras.yaml adds and removes a camera; all of
it stops cleanly. Run with `-s` to see the scoring gap while the camera moves.

Bounded: about 1-2 minutes on 2 cores, most of it the two detectors importing torch and building their engines.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.records import ClusterCamera
from stream.store import open_reader
from tests.cluster_run import ClusterRun, face_video, scores_of, scoring_gap, wait_for
from tests.netns import private_network, require, rtsp_server
from tests.pg_server import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
GAP_TARGET_S = 30.0  # the target for a moving camera's gap in scoring


def require_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        require("ray is not installed (pip install -e '.[cluster]')")


@pytest.fixture(scope="module", autouse=True)
def private_netns() -> Iterator[None]:
    with private_network():
        yield


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream.cluster", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read"),
        ("cameras: [", "is not valid YAML"),
        ("cameras:\n  - {name: 'a b', source: demo}\n", "name must be 1-64 of"),
        ("cameras:\n  - {name: a, source: demo}\n  - {name: a, source: demo}\n", "listed twice"),
        ("cameras:\n  - {name: a}\n", "source must be a source reference"),
        ("detector: {num_cpus: 0}\ncameras: []\n", "needs num_cpus or num_gpus"),
        ("detector: {gpus: 1}\ncameras: []\n", "unknown key detector.gpus"),
        ("camera: []\n", "unknown section camera"),
    ],
)
def test_a_bad_cameras_file_is_one_line(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "cameras.yaml"
    if content is not None:
        path.write_text(content)
    done = run_cli(str(path), "--db", str(tmp_path / "s.db"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and expected in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "s.db").exists()  # nothing started


def test_a_bad_store_url_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "cameras.yaml"
    path.write_text("cameras: []\n")
    done = run_cli(str(path), "--db", "mysql://host/db")
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "mysql://" in done.stderr, done.stderr


def test_a_detector_that_cannot_start_is_one_line(tmp_path: Path) -> None:
    """A detector whose checkpoint is missing fails in its actor's constructor: Ray does not restart it, and with no
    detector left the cluster stops with one `error:` line (exit 1)."""
    require_ray()
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text("cameras:\n  - {name: lobby, source: demo}\n")
    missing = tmp_path / "missing.pt"
    done = run_cli(str(cameras), "--db", str(tmp_path / "s.db"), "--weights", str(missing), "--detectors", "1")
    assert done.returncode == 1, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: no detector could start: checkpoint not found: {missing} (put it in weights/ or pass --weights auto)"
    ], done.stderr[-3000:]


def listening_addresses() -> list[str]:
    """The local addresses of every listening TCP socket in this thread's network namespace (hex, as /proc has
    them: IPv4 little-endian, IPv6 in 32-bit words)."""
    found = []
    for name in ("tcp", "tcp6"):
        for line in Path(f"/proc/thread-self/net/{name}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                found.append(fields[1].rsplit(":", 1)[0])
    return found


def is_loopback(address: str) -> bool:
    if len(address) == 8:  # IPv4, little-endian: 127.x.y.z ends in 7F
        return address.endswith("7F")
    # IPv6: ::1, or ::ffff:127.x.y.z (v4-mapped)
    return address == "00000000000000000000000001000000" or (
        address.startswith("0000000000000000FFFF0000") and address.endswith("7F")
    )


def test_its_own_cluster_listens_on_loopback_only(tmp_path: Path) -> None:
    """Without --address it starts a one-machine Ray cluster of its own: every server of it listens on 127.0.0.1 (here
    over SQLite, the store for a cluster that stays on one machine)."""
    require_ray()
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text("cameras:\n  - {name: lobby, source: demo}\n")
    config = tmp_path / "detector.yaml"
    config.write_text("clips: {enabled: false}\npipeline: {annotate_fps: 1}\n")
    db = tmp_path / "runs" / "deepfake.db"
    command = [sys.executable, "-m", "stream.cluster", str(cameras), "--db", str(db), "--config", str(config)]
    command += ["--window", "10", "--cpu-engine", "onnxruntime", "--detectors", "1"]
    log = tmp_path / "coordinator.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:

        def status() -> list[ClusterCamera]:
            if not db.exists():
                return []
            with open_reader(db) as reader:
                return reader.cluster_status()

        [row] = wait_for("the camera live", lambda: [r for r in status() if r.state == "live"], 120, log)
        addresses = listening_addresses()
        assert addresses and all(is_loopback(a) for a in addresses), addresses
        assert row.actor == "detector-0" and row.node is not None and row.node.startswith("127.0.0.1 ")
        wait_for("lobby scored", lambda: scored(db, row), 60, log)
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(90) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    with open_reader(db) as reader:
        assert [r.state for r in reader.cluster_status()] == ["stopped"]
        [session] = reader.sessions()
        assert session.session_id == row.session_id and session.ended_at is not None
    # Its log went to a file: no colour codes, no lines folded into `[repeated …]`, and it says what it stopped.
    text = log.read_text(errors="replace")
    assert "\x1b[" not in text and "[repeated" not in text, text[-3000:]
    assert f"cluster: stopped detector-0 (session {row.session_id}): lobby (live)" in text, text[-3000:]


def test_what_a_stopped_cluster_says() -> None:
    require_ray()
    from stream.cluster.coordinator import stopped_lines

    rows = [
        ClusterCamera("c", "lobby", "demo", "detector-0", "n", "s0", "live", 1.0, 2.0, None),
        ClusterCamera("c", "door", "rtsp://***@cam/door", "detector-0", "n", "s0", "reconnecting", 1.0, 2.0, None),
        ClusterCamera("c", "yard", "demo", None, None, None, "unplaced", 1.0, 2.0, None),
    ]
    assert stopped_lines([("detector-0", "s0"), ("detector-1", None)], rows) == [
        "cluster: stopped detector-0 (session s0): lobby (live), door (reconnecting)",
        "cluster: stopped detector-1: no cameras",
        "cluster: stopped, and not running anywhere: yard (unplaced)",
    ]


def scored(db: Path, row: ClusterCamera) -> bool:
    with open_reader(db) as reader:
        return bool(row.session_id and scores_of(reader, row.session_id, row.camera))


def test_a_node_dies_and_its_camera_is_scored_on_another(pg_server: PostgresServer, tmp_path: Path) -> None:
    require_ray()
    db = pg_server.create_database("cluster")
    video = face_video(tmp_path / "face.mp4")
    with rtsp_server(video, path="/cam") as url:
        cameras = {"door": url, "lobby": "demo"}
        with ClusterRun(tmp_path, db, cameras, workers=1) as run:
            # Both cameras run, one on each node's detector, each detector its own session.
            rows = wait_for("both cameras live", run.live, 240, run.log)
            assert len({r.actor for r in rows}) == 2 and len({r.node for r in rows}) == 2, rows
            assert len({r.session_id for r in rows}) == 2, rows
            started_s = wait_for("both cameras scored", lambda: scored_after(run, rows), 60, run.log)
            print(f"\ncluster: both cameras scored {started_s:.1f} s after the cluster started")
            [moving] = [r for r in rows if run.node_of(r) is not run.cluster.head_node]
            [staying] = [r for r in rows if r is not moving]

            run.remove_node(run.node_of(moving))
            with run.reader() as reader:
                before = len(scores_of(reader, moving.session_id, moving.camera))  # what was committed by now
            moved = wait_for(
                f"camera {moving.camera} live again on {staying.actor}",
                lambda: running_on(run, moving.camera, staying.actor),
                90,
                run.log,
            )
            assert moved.session_id == staying.session_id and moved.node == staying.node
            with run.reader() as reader:
                gap_s, kept, new = wait_for(
                    f"{moving.camera} scored in {staying.session_id}",
                    lambda: scoring_gap(reader, moving.camera, moving.session_id, staying.session_id),
                    60,
                    run.log,
                )
                # Scores are keyed by session: the camera's rows in the dead detector's session are all still there.
                assert kept == before > 0
            print(f"cluster: scoring gap while camera {moving.camera} moved: {gap_s:.1f} s ({kept} + {new} scores)")
            assert 0 < gap_s <= GAP_TARGET_S

            # An edit of cameras.yaml: a camera added (it goes to the one detector left), one removed.
            run.write_cameras({moving.camera: cameras[moving.camera], "yard": "demo"})
            wait_for(
                "the edited camera list running", lambda: live_cameras(run) == {moving.camera, "yard"}, 60, run.log
            )
            assert {r.actor for r in run.status()} == {staying.actor}
            wait_for("yard scored", lambda: scored_after(run, [r for r in run.status() if r.camera == "yard"]), 60)

            # A new node: Ray starts the dead detector again there (a new detector, a new session); it takes the
            # next camera (the freest detector), and the coordinator ends its earlier session in the store.
            new_node = run.add_node()
            wait_for(f"{moving.actor} up again", lambda: back_up(run, moving.actor), 120, run.log)
            run.write_cameras({moving.camera: cameras[moving.camera], "yard": "demo", "gate": "demo"})
            [gate] = wait_for("gate live", lambda: [r for r in run.live() or [] if r.camera == "gate"], 60, run.log)
            assert gate.actor == moving.actor and run.node_of(gate) is new_node
            assert gate.session_id not in (moving.session_id, staying.session_id)
            code = run.stop()
            log = run.log_text()
            assert code == 0, log[-3000:]

    assert "is down" in log and f"camera {moving.camera} moves from {moving.actor} to {staying.actor}" in log, log
    assert f"{moving.actor} was restarted by Ray" in log, log
    with run.reader() as reader:
        assert {r.state for r in reader.cluster_status()} == {"stopped"}
        sessions = {s.session_id: s for s in reader.sessions()}
        # The live detector ended its own session; the coordinator ended the one whose node died.
        assert sessions[staying.session_id].ended_at is not None
        assert sessions[moving.session_id].ended_at is not None
        # The camera removed from the file was stopped (its stream ended, its scores stay).
        streams = {s.stream_id: s for s in reader.streams(staying.session_id)}
        health = streams[staying.camera].health
        assert health is not None and health.state == "ended"
        assert scores_of(reader, staying.session_id, staying.camera)


def scored_after(run: ClusterRun, rows: list[ClusterCamera]) -> float | None:
    """Seconds since the cluster started, once every camera of `rows` has a score in its detector's session."""
    with run.reader() as reader:
        if rows and all(r.session_id and scores_of(reader, r.session_id, r.camera) for r in rows):
            return time.monotonic() - run.started_at
    return None


def running_on(run: ClusterRun, camera: str, actor: str | None) -> ClusterCamera | None:
    return next((r for r in run.status() if r.camera == camera and r.actor == actor and r.state == "live"), None)


def live_cameras(run: ClusterRun) -> set[str]:
    return {r.camera for r in (run.live() or [])}


def back_up(run: ClusterRun, actor: str | None) -> bool:
    """The coordinator has logged `actor` up again after it was down."""
    return any(f"{actor} is up on node" in line and line.endswith("(back)") for line in run.log_text().splitlines())
