"""The PostgreSQL store on its own (the shared suite runs on it too: test_store.py): `--db` read as a URL before any
path handling, the password only through libpq, the schema and its version, retention dropping whole partitions,
two detector processes writing to one database at once, and the dashboard over it.

The server is real (tests/pg_server.py: the machine's initdb/pg_ctl as an unprivileged user on a unix socket)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from dashboard import data
from stream.config import ConfigError, Settings, settings_as_dict, with_overrides
from stream.config.store_location import PostgresUrl, local_path, parse_store_target
from stream.records import FaceUpdate, VerdictState
from stream.store import SCHEMA_SQL, SCHEMA_VERSION, StoreError, open_reader, open_writer
from stream.store.pg_schema import PG_FIRST_VERSION, PG_MIGRATIONS
from tests import media
from tests.dashboard_store import Run, dashboard
from tests.helpers import PIN_ENGINE
from tests.pg_server import WRITER_PASSWORD, PostgresServer
from tests.test_store import DAY, INFO, score

ROOT = Path(__file__).resolve().parent.parent


# ---- `--db` is a URL before it is a path (no server needed) -----------------------------------------------------


@pytest.mark.parametrize(
    "value", ["postgresql://me@db.example:5433/scores", "postgres://me@/scores?host=/run/pg", "postgresql:///scores"]
)
def test_a_postgresql_url_never_becomes_a_sqlite_path(value: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = with_overrides(Settings(), {"store.db": value})
    assert settings.store.db == PostgresUrl(value)
    assert settings_as_dict(settings)["store"]["db"] == value  # kept with the session as given
    assert data.db_path(["--db", value], {}) == PostgresUrl(value)
    assert data.db_path([], {data.DB_ENV: value}) == PostgresUrl(value)
    assert local_path(settings.store.db).parent == Path("runs")  # clips and uploads: a local folder
    with pytest.raises(StoreError, match="cannot open the score store at postgres"):
        open_writer(f"postgresql://nobody@/nothing?host={tmp_path}/no-server")
    assert list(tmp_path.iterdir()) == []  # no folder named `postgresql:` and no SQLite file


def test_paths_stay_paths_and_other_schemes_and_passwords_are_refused() -> None:
    assert parse_store_target("runs/x.db") == Path("runs/x.db")
    assert parse_store_target("postgresql-dump/x.db") == Path("postgresql-dump/x.db")
    for value, reason in [
        ("mysql://me@h/db", "unsupported store URL scheme mysql://"),
        ("postgresql://me:hunter2@h/db", "must not carry a password"),
        ("postgresql://me@h/db?password=hunter2", "must not carry a password"),
        ("postgresql://me:hunter2@[broken/db", "is not a valid postgresql:// URL"),
    ]:
        with pytest.raises(ConfigError) as raised:
            with_overrides(Settings(), {"store.db": value})
        message = str(raised.value)
        assert reason in message and "\n" not in message
        assert "hunter2" not in message


def test_the_cli_refuses_a_password_in_the_url_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_stream.py"), "demo", "--db", "postgresql://me:hunter2@localhost/db"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "PGPASSWORD" in lines[0], lines
    assert "hunter2" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []


# ---- the schema ----------------------------------------------------------------------------------------------------


def _columns_sqlite(tmp_path: Path) -> dict[str, list[str]]:
    import sqlite3

    conn = sqlite3.connect(tmp_path / "s.db")
    try:
        conn.executescript(SCHEMA_SQL)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in tables if t != "sqlite_sequence"}
    finally:
        conn.close()


def test_same_tables_and_columns_as_sqlite_and_a_version(pg_server: PostgresServer, tmp_path: Path) -> None:
    url = pg_server.create_database("schema_same")
    open_writer(url).close()
    open_writer(url).close()  # opening again keeps it as it is
    dbname = "schema_same"
    rows = pg_server.psql(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
        "AND table_name NOT LIKE 'scores\\_%' ORDER BY table_name, ordinal_position",
        dbname,
    )
    pg: dict[str, list[str]] = {}
    for table, column in rows:
        pg.setdefault(str(table), []).append(str(column))
    assert pg.pop("schema_version") == ["version"]
    assert pg == _columns_sqlite(tmp_path)
    assert pg_server.psql("SELECT version FROM schema_version", dbname) == [(SCHEMA_VERSION,)]
    # Every version after the first PostgreSQL one needs its migration step.
    assert set(range(PG_FIRST_VERSION, SCHEMA_VERSION)) <= set(PG_MIGRATIONS)


def test_a_newer_schema_is_one_clear_error_for_writer_and_reader(pg_server: PostgresServer) -> None:
    url = pg_server.create_database("schema_newer")
    open_writer(url).close()
    pg_server.psql(f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}", "schema_newer")
    expected = f"has schema version {SCHEMA_VERSION + 1}, newer than this program's {SCHEMA_VERSION}"
    with pytest.raises(StoreError, match=expected) as raised:
        open_writer(url)
    assert "\n" not in str(raised.value) and "upgrade deepfake-stream" in str(raised.value)
    with open_reader(url) as reader, pytest.raises(StoreError, match=expected):
        reader.sessions()


def test_an_empty_database_reads_as_no_sessions(pg_server: PostgresServer) -> None:
    url = pg_server.create_database("empty_db")
    with open_reader(url) as reader:
        assert reader.sessions() == [] and reader.latest_session() is None and reader.face_summaries("x") == []
    with pytest.raises(StoreError, match="cannot read the score store at postgresql://") as raised:
        open_reader(url.replace("/empty_db?", "/no_such_db?"))
    assert "\n" not in str(raised.value)


# ---- the password: libpq's business only ---------------------------------------------------------------------------


def test_password_from_pgpassword_or_pgpass_never_stored_or_logged(
    pg_server: PostgresServer, tmp_path: Path, monkeypatch, caplog
) -> None:
    if not pg_server.psql("SELECT 1 FROM pg_roles WHERE rolname = 'writer'"):
        pg_server.create_writer_role()
    pg_server.psql('CREATE DATABASE "with_password" OWNER writer')
    url = pg_server.url("with_password", "writer")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    with pytest.raises(StoreError) as raised:
        open_writer(url)
    assert "\n" not in str(raised.value) and "password" in str(raised.value)

    monkeypatch.setenv("PGPASSWORD", WRITER_PASSWORD)
    settings = with_overrides(Settings(), {"store.db": url})
    with caplog.at_level(logging.DEBUG), open_writer(settings.store.db) as w:
        sid = w.start_session(INFO, config=settings_as_dict(settings))
        w.write_scores([score(sid, i) for i in range(3)])
    monkeypatch.delenv("PGPASSWORD")
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"*:*:with_password:writer:{WRITER_PASSWORD}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    with open_reader(url) as r:
        assert len(r.scores(sid, "cam0", 1)) == 3
        assert r.session_config(sid)["store"]["db"] == url
    stored = pg_server.psql(
        "SELECT string_agg(t::text, ' ') FROM (SELECT * FROM sessions) t UNION ALL "
        "SELECT string_agg(config, ' ') FROM session_config",
        "with_password",
    )
    assert WRITER_PASSWORD not in str(stored)
    assert WRITER_PASSWORD not in caplog.text


# ---- retention: whole sessions, whole partitions --------------------------------------------------------------------


def test_retention_drops_a_partition_and_never_half_a_session(pg_server: PostgresServer, caplog) -> None:
    url = pg_server.create_database("retention_parts")
    now = time.time()
    with open_writer(url, retention_days=None) as w:
        gone = w.start_session(INFO, started_at=now - 50 * DAY)  # its day's partition holds only it
        w.write_scores([score(gone, i) for i in range(5)])
        w.end_session(gone, ended_at=now - 45 * DAY)
        ended = w.start_session(INFO, started_at=now - 40 * DAY)  # shares its day with a session still running
        w.write_scores([score(ended, i) for i in range(4)])
        w.end_session(ended, ended_at=now - 39 * DAY)
        running = w.start_session(INFO, started_at=now - 40 * DAY + 60)
        w.write_scores([score(running, i) for i in range(6)])
        w.commit()  # last_active: now
    parts = {r[0] for r in pg_server.psql("SELECT relname FROM pg_class WHERE relname ~ '^scores_p'", url_db(url))}
    day_gone, day_shared = f"scores_p{gone[:8]}", f"scores_p{ended[:8]}"
    assert {day_gone, day_shared} <= parts and day_gone != day_shared

    with caplog.at_level(logging.INFO, logger="deepfake_stream"), open_writer(url, retention_days=30) as w:
        w.start_session(INFO)
    parts = {r[0] for r in pg_server.psql("SELECT relname FROM pg_class WHERE relname ~ '^scores_p'", url_db(url))}
    assert day_gone not in parts  # dropped whole
    assert day_shared in parts  # kept: a live session's scores are in it
    with open_reader(url) as r:
        assert {gone, ended}.isdisjoint(s.session_id for s in r.sessions())
        assert r.scores(gone, "cam0", 1) == [] and r.scores(ended, "cam0", 1) == []
        assert [s.frame_index for s in r.scores(running, "cam0", 1)] == list(range(6))
    [line] = [r.getMessage() for r in caplog.records if r.name == "deepfake_stream"]
    assert "deleted 2 session(s)" in line and "9 scores" in line and f"dropped partition(s) {day_gone}" in line


def url_db(url: str) -> str:
    return url.split("/")[3].split("?")[0]


# ---- two detector processes, one database ---------------------------------------------------------------------------


def test_two_detector_processes_write_to_one_database_at_once(pg_server: PostgresServer, tmp_path: Path) -> None:
    url = pg_server.create_database("two_detectors")
    # A file paced to its own rate (4 s) is never thinned: each detector scores every frame however loaded the
    # machine is, and both run for at least its length, so their sessions overlap.
    video = media.write_video(tmp_path / "one_face.mp4", media.render(media.one_face(), 120))
    command = [sys.executable, str(ROOT / "run_stream.py"), *PIN_ENGINE, str(video), "--realtime", "--window", "10"]
    processes = [
        subprocess.Popen(
            [*command, "--db", url],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        for _ in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=240) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, (_, stderr) in zip(processes, outputs, strict=True):
        assert p.returncode == 0, stderr[-2000:]
        assert "Traceback" not in stderr
    with open_reader(url) as r:
        sessions = r.sessions()
        assert len(sessions) == 2 and len({s.session_id for s in sessions}) == 2
        for session in sessions:
            assert session.ended_at is not None
            faces = r.faces(session.session_id)
            assert faces and sum(f.frames_scored for f in faces) > 0
            for face in faces:
                stored = r.scores(session.session_id, face.stream_id, face.track_id)
                assert all(s.session_id == session.session_id for s in stored)
    # Both ran at the same time: their sessions overlap.
    first, second = sorted(sessions, key=lambda s: s.started_at)
    assert second.started_at < first.ended_at
    assert not any(tmp_path.glob("postgres*")) and not any(tmp_path.rglob("*.db"))


# ---- the dashboard over PostgreSQL ---------------------------------------------------------------------------------


def test_the_dashboard_reads_a_postgresql_store(pg_server: PostgresServer, monkeypatch) -> None:
    url = pg_server.create_database("dashboard_pg")
    monkeypatch.setenv(data.DB_ENV, url)
    at = dashboard()
    assert not at.exception, [e.value for e in at.exception]
    assert any("has no runs yet" in str(i.value) for i in at.info)  # an empty database: no schema yet
    with open_writer(url) as writer:
        run = Run(writer)
        run.stream()
        run.face(1, VerdictState.FAKE, 0.8125)
        run.face(2, VerdictState.REAL, 0.1234)
        writer.write_face(
            run.sid, FaceUpdate("clip", 3, run.t0, run.t0 + 1, 0.0, 1.0, "gone", VerdictState.UNSURE, None, 0, None)
        )
    at = dashboard()
    assert not at.exception, [e.value for e in at.exception]
    cards = [m.value for m in at.markdown if m.value.startswith("**face #")]
    assert any(":red-badge[FAKE]" in c for c in cards) and any(":green-badge[REAL]" in c for c in cards)
    text = "\n".join(str(e.value) for kind in ("markdown", "caption") for e in getattr(at, kind))
    assert "rolling p(fake) **0.812**" in text or "rolling p(fake) **0.813**" in text
    assert url in text  # the store it reads, as given (no password in it)


def test_reads_never_wait_for_an_open_write_transaction(pg_server: PostgresServer) -> None:
    url = pg_server.create_database("no_blocking")
    with open_writer(url) as w:
        sid = w.start_session(INFO)
        w.write_scores([score(sid, i) for i in range(10)])
    holder = psycopg.connect(url)  # a writer in the middle of a long transaction, holding row locks
    try:
        holder.execute("UPDATE scores SET p_fake = 0.9 WHERE session_id = %s", (sid,))
        holder.execute("LOCK TABLE faces IN ROW EXCLUSIVE MODE")
        with open_reader(url) as r:
            assert [s.p_fake for s in r.scores(sid, "cam0", 1)] == [0.5] * 10  # the committed rows, at once
            assert r.face_summaries(sid) == [] and r.faces(sid) == []
    finally:
        holder.rollback()
        holder.close()
