"""The score store: round trips, idempotent writes, sessions, reads during writes, crashes, retention, errors.

Every test taking the `store` fixture runs against both backends (SQLite, and PostgreSQL on a server the tests
start: tests/pg_server.py); the ones on SQLite's own file format take `tmp_path` alone."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from stream.records import (
    Alert,
    AnnotatedFrame,
    ClusterCamera,
    FaceSummary,
    FaceUpdate,
    StreamHealth,
    StreamInfo,
    StreamState,
    Verdict,
    VerdictState,
    WindowScore,
)
from stream.store import (
    AlertRow,
    FaceRow,
    FrameRow,
    HealthRow,
    SessionInfo,
    StoreError,
    StreamRow,
    VerdictRow,
    open_reader,
    open_writer,
)
from tests.pg_server import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
HEALTH = StreamHealth(
    "cam0",
    StreamState.LIVE,
    25.0,
    19.5,
    7,
    0,
    None,
    frames_read=80,
    frames_thinned=40,
    crops_encoded=30,
    crops_skipped=9,
)
INFO = SessionInfo(
    checkpoint="model_87_acc_20_frames_final_data.pt",
    calibrated=True,
    window=20,
    stride=1,
    window_mode="mean",
    threshold=0.6,
    hysteresis=0.1,
    device="cpu",
    engine="onnxruntime",
    sources=["demo", "rtsp://***@cam.local/stream"],
)
DAY = 86400.0

# Run by a child interpreter (cwd=ROOT) so the writer is a real second process, as the detector is.
WRITER_PRELUDE = """
import sys, time
from stream.records import AnnotatedFrame, FaceUpdate, StreamInfo
from stream.store import SessionInfo, open_writer
from stream.records import WindowScore
info = SessionInfo("ck.pt", False, 20, 1, "mean", 0.5, 0.1, "cpu", "torch", ["demo"])
w = open_writer(sys.argv[1])
sid = w.start_session(info)
sid
def batch(lo, hi):
    now = time.time()
    return [WindowScore(sid, "cam", 1, i, i / 25, 20, 0.5, now, now) for i in range(lo, hi)]
"""


def score(
    session_id: str, frame_index: int, p_fake: float = 0.5, track_id: int = 1, stream_id: str = "cam0"
) -> WindowScore:
    """Frame `frame_index` at media time index/25 s, captured at 100 + index s and scored 0.5 s later."""
    t = 100.0 + frame_index
    return WindowScore(session_id, stream_id, track_id, frame_index, frame_index / 25, 20, p_fake, t, t + 0.5)


class Backend:
    """One backend of the store for one test: `new()` gives a fresh, empty store (a path or a URL)."""

    def __init__(self, name: str, tmp_path: Path, server: PostgresServer | None) -> None:
        self.name, self.tmp_path, self.server = name, tmp_path, server

    def new(self, relative: str = "s.db") -> Path | str:
        if self.server is None:
            return self.tmp_path / relative
        return self.server.create_database(f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    server = request.getfixturevalue("pg_server") if request.param == "postgresql" else None
    return Backend(request.param, tmp_path, server)


def spawn_writer(db: Path | str, body: str) -> subprocess.Popen[str]:
    script = WRITER_PRELUDE + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", script, str(db)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_round_trip(store: Backend) -> None:
    db = store.new("runs/scores.db")  # SQLite: the parent is made by the writer
    with open_writer(db) as w:
        sid = w.start_session(INFO, started_at=1000.0)
        w.add_stream(sid, StreamInfo("cam0", "demo", "file"))
        w.add_stream(sid, StreamInfo("cam1", "rtsp://***@cam.local/stream", "rtsp"))
        scores = [score(sid, i, p_fake=i / 10) for i in range(5)]
        w.write_scores(scores)
        w.write_face(
            sid, FaceUpdate("cam0", 1, 100.0, 104.0, 0.0, 0.16, "live", VerdictState.UNSURE, 0.3, 5, b"\xff\xd8thumb")
        )
        w.write_verdict(sid, Verdict("cam0", 1, VerdictState.FAKE, 103.0, 0.71))
        first = w.write_alert(sid, Alert("cam0", 1, "turned_fake", 103.0, 0.71, None, t_media=3.1))
        second = w.write_alert(sid, Alert("cam0", 1, "turned_fake", 110.0, 0.9, None))
        w.set_alert_clip(first, "clips/cam0-1.mp4")
        w.write_health(sid, HEALTH, 105.0)
        w.write_frame(sid, AnnotatedFrame("cam0", 104.0, b"old"))
        w.write_frame(sid, AnnotatedFrame("cam0", 105.0, b"\xff\xd8frame"))
        w.end_session(sid, ended_at=2000.0)

    with open_reader(db) as r:
        (session,) = r.sessions()
        assert session.session_id == sid and session.started_at == 1000.0 and session.ended_at == 2000.0
        assert session.info == INFO
        assert r.latest_session() == session
        assert r.streams(sid) == [
            StreamRow(sid, "cam0", "demo", "file", HealthRow(**vars(HEALTH), t=105.0)),
            StreamRow(sid, "cam1", "rtsp://***@cam.local/stream", "rtsp", None),
        ]
        assert r.scores(sid, "cam0", 1) == scores
        assert r.faces(sid) == [
            FaceRow(
                "cam0", 1, 100.0, 104.0, 0.0, 0.16, "live", VerdictState.FAKE, 0.71, 5, b"\xff\xd8thumb", sid, 103.0
            )
        ]
        assert r.faces(sid, "cam1") == []
        assert r.verdicts(sid) == [VerdictRow(sid, "cam0", 1, VerdictState.FAKE, 103.0, 0.71)]
        assert r.alerts(sid) == [
            AlertRow(second, sid, "cam0", 1, "turned_fake", 110.0, 0.9, None, None),
            AlertRow(first, sid, "cam0", 1, "turned_fake", 103.0, 0.71, "clips/cam0-1.mp4", 3.1),
        ]
        assert r.latest_frame(sid, "cam0") == FrameRow("cam0", 105.0, b"\xff\xd8frame", sid)
        assert r.latest_frame(sid, "cam1") is None


def test_scores_since_and_limit_keep_the_newest_in_frame_order(store: Backend) -> None:
    db = store.new()
    with open_writer(db) as w:
        sid = w.start_session(INFO)
        w.write_scores([score(sid, i) for i in range(10)])
    with open_reader(db) as r:
        assert [s.frame_index for s in r.scores(sid, "cam0", 1, limit=3)] == [7, 8, 9]
        assert [s.frame_index for s in r.scores(sid, "cam0", 1, since_t=105.0)] == [5, 6, 7, 8, 9]
        assert [s.frame_index for s in r.scores(sid, "cam0", 1, since_t=105.0, limit=2)] == [8, 9]
        assert r.scores(sid, "cam0", 2) == []


def test_resending_is_idempotent(store: Backend) -> None:
    db = store.new()
    with open_writer(db) as w:
        sid = w.start_session(INFO)
        batch = [score(sid, i) for i in range(4)]
        w.write_scores(batch)
        w.commit()
        w.write_scores(batch)
        w.write_scores([*batch[1:3], score(sid, 4)])
        alert = Alert("cam0", 1, "turned_fake", 103.0, 0.71, None)
        assert w.write_alert(sid, alert) == w.write_alert(sid, alert)
        w.write_verdict(sid, Verdict("cam0", 1, VerdictState.FAKE, 103.0, 0.71))
        w.write_verdict(sid, Verdict("cam0", 1, VerdictState.FAKE, 103.0, 0.71))
    with open_reader(db) as r:
        assert [s.frame_index for s in r.scores(sid, "cam0", 1)] == [0, 1, 2, 3, 4]
        assert len(r.alerts(sid)) == 1
        assert len(r.verdicts(sid)) == 1


def test_face_upsert_keeps_first_thumbnail_and_first_sight(store: Backend) -> None:
    db = store.new()
    with open_writer(db) as w:
        sid = w.start_session(INFO)
        w.write_face(sid, FaceUpdate("cam0", 3, 10.0, 10.0, 1.0, 1.0, "live", VerdictState.UNSURE, None, 0, b"first"))
        w.write_face(sid, FaceUpdate("cam0", 3, 10.0, 12.0, 1.0, 3.0, "live", VerdictState.REAL, 0.2, 40, None))
        w.write_face(sid, FaceUpdate("cam0", 3, 10.0, 13.0, 1.0, 4.0, "live", VerdictState.REAL, 0.2, 60, b"later"))
        w.write_face(sid, FaceUpdate("cam0", 3, 10.0, 14.0, 1.0, 5.0, "gone", VerdictState.REAL, 0.1, 90, None))
        with pytest.raises(ValueError, match="'live' or 'gone'"):
            w.write_face(sid, FaceUpdate("cam0", 3, 10.0, 14.0, 1.0, 5.0, "lost", VerdictState.REAL, 0.1, 90, None))
    with open_reader(db) as r:
        assert r.faces(sid) == [
            FaceRow("cam0", 3, 10.0, 14.0, 1.0, 5.0, "gone", VerdictState.REAL, 0.1, 90, b"first", sid, None)
        ]


def test_uncommitted_batch_is_invisible_until_commit(store: Backend) -> None:
    db = store.new()
    with open_writer(db) as w, open_reader(db) as r:
        sid = w.start_session(INFO)
        w.write_scores([score(sid, i) for i in range(3)])
        assert r.scores(sid, "cam0", 1) == []
        w.commit()
        assert len(r.scores(sid, "cam0", 1)) == 3


def test_second_session_leaves_the_first_unchanged(store: Backend) -> None:
    db = store.new()
    t0 = time.time()
    with open_writer(db) as w:
        first = w.start_session(INFO, started_at=t0)
        w.write_scores([score(first, i, p_fake=0.1) for i in range(5)])
        w.write_face(first, FaceUpdate("cam0", 1, 100.0, 104.0, 0.0, 0.16, "gone", VerdictState.REAL, 0.1, 5, b"a"))
        w.end_session(first)
    with open_reader(db) as r:
        before = (r.sessions(), r.scores(first, "cam0", 1), r.faces(first))
    with open_writer(db) as w:
        second = w.start_session(INFO, started_at=t0)  # the same start time still makes a distinct session
        w.write_scores([score(second, i, p_fake=0.9) for i in range(5)])
        w.write_face(second, FaceUpdate("cam0", 1, 200.0, 204.0, 0.0, 0.16, "live", VerdictState.FAKE, 0.9, 5, b"b"))
    assert second != first
    with open_reader(db) as r:
        others = [s for s in r.sessions() if s.session_id != second]
        assert (others, r.scores(first, "cam0", 1), r.faces(first)) == before
        assert len(r.sessions()) == 2
        assert [s.p_fake for s in r.scores(second, "cam0", 1)] == [0.9] * 5


def test_reader_never_fails_or_blocks_while_another_process_writes(store: Backend) -> None:
    db = store.new()
    # ~50 KB frames make the WAL pass its auto-checkpoint size during the run, so checkpoints happen too.
    writer = spawn_writer(
        db,
        """
        print(sid, flush=True)
        end = time.monotonic() + 2.0
        i = 0
        while time.monotonic() < end:
            w.write_scores(batch(i, i + 10))
            w.write_frame(sid, AnnotatedFrame("cam", time.time(), bytes(50_000)))
            w.write_face(sid, FaceUpdate("cam", 1, 0.0, time.time(), 0.0, i / 25, "live", "UNSURE", 0.5, i + 10, b"t"))
            w.commit()
            i += 10
            time.sleep(0.005)
        w.end_session(sid)
        w.close()
        """,
    )
    sid = writer.stdout.readline().strip()
    assert sid, writer.communicate()[1]
    counts, slowest = [], 0.0
    with open_reader(db) as r:
        while writer.poll() is None:
            t0 = time.monotonic()
            counts.append(len(r.scores(sid, "cam", 1)))
            r.faces(sid)
            r.latest_frame(sid, "cam")
            r.face_summaries(sid)
            slowest = max(slowest, time.monotonic() - t0)
        final = len(r.scores(sid, "cam", 1))
        assert r.latest_session().ended_at is not None
    assert writer.returncode == 0, writer.communicate()[1]
    assert counts == sorted(counts), "committed rows never disappear"
    assert len(set(counts)) > 3, f"the reader should see the rows grow, saw {sorted(set(counts))}"
    assert final >= counts[-1] > 0 and final % 10 == 0
    assert slowest < 1.0, f"a read took {slowest:.2f} s while the writer was writing"


def test_killed_writer_loses_only_the_uncommitted_batch(store: Backend) -> None:
    db = store.new()
    writer = spawn_writer(
        db,
        """
        w.write_scores(batch(0, 30))
        w.commit()
        w.write_scores(batch(30, 40))
        w.commit()
        w.write_scores(batch(40, 60))
        w.write_face(sid, FaceUpdate("cam", 1, 0.0, 1.0, 0.0, 2.4, "live", "UNSURE", 0.5, 60, b"t"))
        w.write_frame(sid, AnnotatedFrame("cam", 1.0, b"frame"))
        print(sid, flush=True)
        time.sleep(60)
        """,
    )
    sid = writer.stdout.readline().strip()
    assert sid, writer.communicate()[1]
    writer.send_signal(signal.SIGKILL)
    assert writer.wait(timeout=10) == -signal.SIGKILL
    with open_reader(db) as r:
        assert [s.frame_index for s in r.scores(sid, "cam", 1)] == list(range(40))
        assert r.faces(sid) == []
        assert r.latest_frame(sid, "cam") is None
        assert r.latest_session().ended_at is None
    with open_writer(db) as w:  # the next run opens the same store after the crash
        w.start_session(INFO)
    with open_reader(db) as r:
        assert len(r.sessions()) == 2


def test_retention_deletes_old_sessions_and_their_rows(store: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    db = store.new()
    now = time.time()
    with open_writer(db, retention_days=None) as w:
        ended = w.start_session(INFO, started_at=now - 50 * DAY)
        w.write_scores([score(ended, i) for i in range(3)])
        w.write_face(ended, FaceUpdate("cam0", 1, 1.0, 2.0, 0.0, 0.1, "gone", VerdictState.REAL, 0.1, 3, b"x"))
        w.end_session(ended, ended_at=now - 40 * DAY)
        recent = w.start_session(INFO, started_at=now - 5 * DAY)
        w.end_session(recent, ended_at=now - 4 * DAY)
    with monkeypatch.context() as m:  # a detector killed 40 days ago: never ended, idle since
        m.setattr(time, "time", lambda: now - 40 * DAY)
        with open_writer(db, retention_days=None) as w:
            crashed = w.start_session(INFO)
            w.write_scores([score(crashed, 0)])

    with open_writer(db, retention_days=None) as w:
        w.start_session(INFO)
    with open_reader(db) as r:
        assert {ended, recent, crashed} <= {s.session_id for s in r.sessions()}

    with open_writer(db, retention_days=30) as w:
        latest = w.start_session(INFO)
    with open_reader(db) as r:
        kept = {s.session_id for s in r.sessions()}
        assert recent in kept and latest in kept
        assert ended not in kept and crashed not in kept
        assert r.scores(ended, "cam0", 1) == [] and r.faces(ended) == [] and r.scores(crashed, "cam0", 1) == []

    with pytest.raises(ValueError, match="retention_days"):
        open_writer(db, retention_days=0)


def test_retention_says_what_it_deleted_and_which_setting_did_it(
    store: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    db = store.new()
    now = time.time()
    with open_writer(db, retention_days=None) as w:
        old = w.start_session(INFO, started_at=now - 50 * DAY)
        w.add_stream(old, StreamInfo("cam0", "demo", "demo"))
        w.write_scores([score(old, i) for i in range(3)])
        w.write_face(old, FaceUpdate("cam0", 1, 1.0, 2.0, 0.0, 0.1, "gone", VerdictState.FAKE, 0.9, 3, b"x"))
        w.write_alert(old, Alert("cam0", 1, "turned_fake", 2.0, 0.9, None))
        w.end_session(old, ended_at=now - 40 * DAY)
    with caplog.at_level(logging.INFO, logger="deepfake_stream"), open_writer(db, retention_days=30) as w:
        w.start_session(INFO)
    lines = [r.getMessage() for r in caplog.records if r.name == "deepfake_stream"]
    assert len(lines) == 1, lines
    line = lines[0]
    cutoff = time.strftime("%Y-%m-%d", time.gmtime(now - 30 * DAY))
    assert "deleted 1 session(s)" in line and cutoff in line
    assert "3 scores" in line and "1 faces" in line and "1 alerts" in line and "1 streams" in line
    assert "store.retention_days: 30" in line and "null keeps everything" in line
    assert "\n" not in line

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="deepfake_stream"), open_writer(db, retention_days=30) as w:
        w.start_session(INFO)  # nothing old left: nothing to say
    assert [r for r in caplog.records if r.name == "deepfake_stream"] == []


def test_face_summaries_match_what_was_written(store: Backend) -> None:
    db = store.new()
    with open_writer(db) as w:
        sid = w.start_session(INFO)
        a = [0.2, 0.4, 0.9, 0.5]
        w.write_scores([score(sid, 10 + i, p_fake=p) for i, p in enumerate(a)])
        w.write_face(sid, FaceUpdate("cam0", 1, 50.0, 60.0, 0.4, 0.52, "gone", VerdictState.UNSURE, 0.5, 4, None))
        w.write_verdict(sid, Verdict("cam0", 1, VerdictState.FAKE, 55.0, 0.7))
        w.write_scores([score(sid, i, p_fake=0.1, track_id=2, stream_id="cam1") for i in range(3)])
        w.write_face(
            sid,
            FaceUpdate(
                "cam1", 2, 51.0, 52.0, 0.0, 0.08, "live", VerdictState.REAL, 0.1, 3, None, crops=12, crops_skipped=5
            ),
        )
        w.write_face(
            sid, FaceUpdate("cam1", 5, 53.0, 53.0, 2.0, 2.0, "live", VerdictState.UNSURE, None, 0, None, crops=4)
        )
        other = w.start_session(INFO)
        w.write_scores([score(other, i, p_fake=1.0) for i in range(50)])  # another session must not leak in
    with open_reader(db) as r:
        summaries = r.face_summaries(sid)
    assert [(s.stream_id, s.track_id) for s in summaries] == [("cam0", 1), ("cam1", 2), ("cam1", 5)]
    first, second, unscored = summaries
    assert first.frames_scored == 4 and first.verdict == VerdictState.FAKE
    assert first.mean_p_fake == pytest.approx(sum(a) / 4) and first.max_p_fake == 0.9
    assert (first.first_t_media, first.last_t_media) == (10 / 25, 13 / 25)
    assert (first.first_seen, first.last_seen) == (50.0, 60.0)
    assert second == FaceSummary(
        "cam1", 2, 51.0, 52.0, 0.0, 2 / 25, 3, VerdictState.REAL, pytest.approx(0.1), 0.1, crops=12, crops_skipped=5
    )
    assert unscored == FaceSummary(
        "cam1", 5, 53.0, 53.0, 2.0, 2.0, 0, VerdictState.UNSURE, None, None, crops=4, crops_skipped=0
    )
    with open_reader(db) as r:
        assert [(f.track_id, f.crops, f.crops_skipped) for f in r.faces(sid, "cam1")] == [(2, 12, 5), (5, 4, 0)]


def test_unwritable_paths_give_a_one_line_store_error(tmp_path: Path) -> None:
    plain = tmp_path / "plain-file"
    plain.write_text("not a folder")
    for path in (
        plain / "scores.db",
        plain / "deeper" / "scores.db",
        Path("/proc/deepfake-stream/scores.db"),
        tmp_path,
    ):
        with pytest.raises(StoreError) as raised:
            open_writer(path)
        message = str(raised.value)
        assert "\n" not in message
        assert message.startswith(f"cannot open the score store at {path}: ") and message.endswith("writable path")


def test_reader_errors_and_empty_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"no score store at .*missing\.db yet: start the detector"):
        open_reader(tmp_path / "missing.db")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database " * 200)
    with pytest.raises(StoreError, match="cannot read the score store"):
        open_reader(garbage)
    empty = tmp_path / "empty.db"  # the instant between the writer creating the file and its schema
    empty.touch()
    with open_reader(empty) as r:
        assert r.sessions() == [] and r.latest_session() is None and r.face_summaries("x") == []


def test_closing_twice_is_safe_and_writes_after_close_fail_clearly(store: Backend) -> None:
    db = store.new()
    w = open_writer(db)
    sid = w.start_session(INFO)
    w.write_scores([score(sid, 0)])
    w.close()
    w.close()
    with pytest.raises(StoreError, match="closed"):
        w.write_scores([score(sid, 1)])
    with open_reader(db) as r:
        assert len(r.scores(sid, "cam0", 1)) == 1  # close() committed the open batch


def test_cluster_status_is_replaced_per_cluster_and_read_newest_first(store: Backend) -> None:
    db = store.new()
    older, newer = "20260101T000000000Z-aaaaaa", "20260102T000000000Z-bbbbbb"

    def row(cluster: str, camera: str, actor: str | None, state: str, t: float) -> ClusterCamera:
        node = None if actor is None else "127.0.0.1 (abcd1234)"
        return ClusterCamera(cluster, camera, "rtsp://***@cam/s", actor, node, None, state, t - 1, t, None)

    with open_writer(db) as w:
        w.write_cluster_status(older, [row(older, "door", "detector-0", "live", 5.0)])
        w.write_cluster_status(newer, [row(newer, "door", "detector-0", "live", 10.0)])
        w.write_cluster_status(
            newer, [row(newer, "door", "detector-1", "assigned", 11.0), row(newer, "yard", None, "unplaced", 11.0)]
        )
        w.write_cluster_status(newer, [row(newer, "yard", "detector-1", "live", 12.0)])  # door was removed
        with pytest.raises(ValueError, match="must be of cluster"):
            w.write_cluster_status(newer, [row(older, "door", None, "stopped", 13.0)])
    with open_reader(db) as r:
        assert r.cluster_status() == [row(newer, "yard", "detector-1", "live", 12.0)]
        assert r.cluster_status(older) == [row(older, "door", "detector-0", "live", 5.0)]
        assert r.cluster_status("no-such-cluster") == []


def test_cluster_status_of_a_store_no_cluster_wrote_to_is_empty(store: Backend) -> None:
    db = store.new()
    with open_writer(db) as w:
        w.start_session(INFO)
    with open_reader(db) as r:
        assert r.cluster_status() == []


def test_keep_alive_moves_a_quiet_sessions_last_active(store: Backend) -> None:
    """A service waiting for its first stream writes nothing else: keep_alive is what shows it is still running."""
    db = store.new()
    with open_writer(db) as w, open_reader(db) as r:
        sid = w.start_session(INFO, started_at=1000.0)
        w.commit()
        (before,) = [s.last_active for s in r.sessions() if s.session_id == sid]
        time.sleep(0.05)
        w.keep_alive(sid)
        w.commit()
        (after,) = [s.last_active for s in r.sessions() if s.session_id == sid]
    assert after > before
