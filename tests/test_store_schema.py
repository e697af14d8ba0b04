"""The score store's schema: SQLite's WAL and schema version, stores written by older versions read as they are and
migrated by a writer (both backends for schema 5 -> 6), and the schema-6 columns of a stream cut short."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from stream.records import (
    StopReason,
    StreamHealth,
    StreamInfo,
    StreamState,
)
from stream.store import (
    SCHEMA_SQL,
    SCHEMA_VERSION,
    HealthRow,
    open_reader,
    open_writer,
)
from stream.store.dialect import POSTGRES, SQLITE, Dialect
from stream.store.pg_schema import PG_SCHEMA_SQL
from stream.store.tables import TABLES, column_sql
from tests.test_store import HEALTH, INFO, Backend


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each test on both backends, as in tests/test_store.py."""
    server = request.getfixturevalue("pg_server") if request.param == "postgresql" else None
    return Backend(request.param, tmp_path, server)


def test_store_is_wal_with_a_schema_version(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    open_writer(db).close()
    open_writer(db).close()  # opening an existing store again keeps it as it is
    raw = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # what lets the dashboard read during writes
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        raw.close()


# The columns each schema version added, as SCHEMA_SQL spells them: taking them out, newest first, gives the older
# schema.
ADDED_IN = {
    6: [
        ", frames_expected INTEGER, stop_reason TEXT, overload_share REAL NOT NULL DEFAULT 0",
    ],
    5: [SCHEMA_SQL[SCHEMA_SQL.index("CREATE TABLE IF NOT EXISTS cluster_status") :].split(";", 1)[0] + ";"],
    4: [", service_url TEXT"],
    3: [
        " frames_thinned INTEGER NOT NULL DEFAULT 0, crops_encoded INTEGER NOT NULL DEFAULT 0, "
        "crops_skipped INTEGER NOT NULL DEFAULT 0,",
        " crops_skipped INTEGER NOT NULL DEFAULT 0,",
    ],
    2: [", frames_read INTEGER NOT NULL DEFAULT 0", "crops INTEGER NOT NULL DEFAULT 0,"],
}


def schema_of(version: int) -> str:
    schema = SCHEMA_SQL
    for added in range(SCHEMA_VERSION, version, -1):
        for column in ADDED_IN[added]:
            assert column in schema, column
            schema = schema.replace(column, "", 1)
    return schema


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_store_is_read_as_it_is_and_migrated_by_a_writer(tmp_path: Path, version: int) -> None:
    db = tmp_path / f"v{version}.db"
    old_schema = schema_of(version)
    assert old_schema != SCHEMA_SQL
    health_v1 = "('old', 'cam', 'ended', 25.0, 20.0, 0, 0, NULL, 2.0"
    face_v1 = "('old', 'cam', 1, 1.0, 2.0, 0.0, 1.0, 'gone', 'REAL', NULL, 0.2, 30, NULL"
    with sqlite3.connect(db) as conn:
        conn.executescript(f"{old_schema}PRAGMA user_version={version};")
        conn.execute(
            "INSERT INTO sessions VALUES "
            "('old', 1.0, 2.0, 2.0, 'ck.pt', 1, 20, 1, 'mean', 0.5, 0.1, 'cpu', 'ort', '[]')"
        )
        conn.execute("INSERT INTO streams VALUES ('old', 'cam', 'demo', 'file')")
        conn.execute(f"INSERT INTO health VALUES {health_v1}{', 90' if version == 2 else ''})")
        conn.execute(f"INSERT INTO faces VALUES {face_v1}{', 31' if version == 2 else ''})")
    crops = 31 if version == 2 else 0
    with open_reader(db) as r:  # read-only: nothing is migrated
        [face] = r.faces("old")
        assert (face.crops, face.crops_skipped, face.frames_scored) == (crops, 0, 30)
        [summary] = r.face_summaries("old")
        assert summary.crops == (31 if version == 2 else None)  # unknown, not zero
        assert summary.crops_skipped is None
        health = r.streams("old")[0].health
        assert (health.frames_read, health.frames_thinned, health.crops_skipped) == (90 if version == 2 else 0, 0, 0)
    with open_writer(db, retention_days=None) as w:  # a writer migrates, keeping every row
        sid = w.start_session(INFO)
        w.write_health(sid, HEALTH, 3.0)
    with open_reader(db) as r:
        assert r.faces("old")[0].frames_scored == 30 and r.faces("old")[0].crops == crops
        assert r.face_summaries("old")[0].crops_skipped == 0
        assert r.streams(sid) == []  # health without a stream row is not a stream
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
        row = conn.execute(
            "SELECT frames_thinned, crops_encoded, crops_skipped FROM health WHERE session_id = ?", (sid,)
        )
        assert row.fetchone() == (40, 30, 9)


# ---- schema 6: how a stream that did not reach its end was stopped, how far it got, how overloaded it was ----------
CUT_SHORT = StreamHealth(
    "call",
    StreamState.INTERRUPTED,
    30.0,
    14.5,
    0,
    0,
    None,
    frames_read=150,
    frames_expected=1200,
    stop_reason=StopReason.DURATION,
    overload_share=0.25,
)


def test_an_interrupted_streams_reason_progress_and_overload_round_trip(store: Backend) -> None:
    db = store.new()
    with open_writer(db) as w:
        sid = w.start_session(INFO)
        w.add_stream(sid, StreamInfo("call", "long40s.mp4", "file"))
        w.add_stream(sid, StreamInfo("cam0", "demo", "demo"))
        w.write_health(sid, CUT_SHORT, 10.0)
        w.write_health(sid, HEALTH, 10.0)
    with open_reader(db) as r:
        call, cam = (s.health for s in r.streams(sid))
    assert call == HealthRow(**vars(CUT_SHORT), t=10.0)
    assert call.stop_reason is StopReason.DURATION and call.percent_read == pytest.approx(12.5)
    assert (cam.stop_reason, cam.frames_expected, cam.overload_share, cam.percent_read) == (None, None, 0.0, None)


def schema_5(dialect: Dialect) -> str:
    """This program's schema as version 5 wrote it: without the columns version 6 added."""
    schema = SCHEMA_SQL if dialect is SQLITE else PG_SCHEMA_SQL
    for table in TABLES:
        for column in (c for c in table.columns if c.since == 6):
            spelled = f", {column_sql(dialect, column)}"
            assert spelled in schema, spelled
            schema = schema.replace(spelled, "", 1)
    return schema


def make_schema_5_store(store: Backend) -> Path | str:
    """A store at schema 5 holding one session whose file stream was interrupted (as version 5 stored it)."""
    db = store.new()
    rows = (
        "INSERT INTO sessions VALUES ('old', 1.0, 2.0, 2.0, 'ck.pt', 1, 20, 1, 'mean', 0.5, 0.1, 'cpu', 'ort', '[]', "
        "NULL);\nINSERT INTO streams VALUES ('old', 'call', 'call.mp4', 'file');\n"
        "INSERT INTO health VALUES ('old', 'call', 'interrupted', 30.0, 20.0, 0, 0, NULL, 2.0, 81, 0, 40, 0);\n"
    )
    if store.server is None:
        with sqlite3.connect(db) as conn:
            conn.executescript(f"{schema_5(SQLITE)}PRAGMA user_version=5;\n{rows}")
    else:
        dbname = str(db).split("/")[3].split("?")[0]
        store.server.psql(f"{schema_5(POSTGRES)}INSERT INTO schema_version VALUES (5);\n{rows}", dbname)
    return db


def test_a_schema_5_store_is_read_as_it_is_and_migrated_to_6_by_a_writer(store: Backend) -> None:
    db = make_schema_5_store(store)
    with open_reader(db) as r:  # read-only: nothing is migrated; the new columns read as unknown
        [old] = r.streams("old")
    assert old.health.state is StreamState.INTERRUPTED and old.health.frames_read == 81
    assert (old.health.stop_reason, old.health.frames_expected, old.health.overload_share) == (None, None, 0.0)
    with open_writer(db, retention_days=None) as w:  # a writer migrates, keeping every row
        sid = w.start_session(INFO)
        w.add_stream(sid, StreamInfo("call", "long40s.mp4", "file"))
        w.write_health(sid, CUT_SHORT, 10.0)
    with open_reader(db) as r:
        assert r.streams("old") == [old]
        assert r.streams(sid)[0].health == HealthRow(**vars(CUT_SHORT), t=10.0)
    if store.server is None:
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    else:
        dbname = str(db).split("/")[3].split("?")[0]
        assert store.server.psql("SELECT version FROM schema_version", dbname) == [(6,)]
