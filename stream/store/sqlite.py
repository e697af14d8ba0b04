"""The score store in SQLite (WAL mode): the detector's writer. Its statements are in queries.py, its schema in
schema.py and the dashboard's read-only reader in sqlite_reader.py.

Every run is a session; writes are idempotent, keyed by (session, stream, track, frame_index), so re-sending is
harmless and a second run never overwrites the first.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from stream.records import Alert, WindowScore
from stream.store.dialect import SQLITE
from stream.store.keys import new_session_id
from stream.store.private_files import create_private_file, make_private_folder
from stream.store.queries import Statement, WriteQueries
from stream.store.records import SessionInfo, StoreError
from stream.store.schema import BUSY_TIMEOUT_S, MIGRATIONS, SCHEMA_SQL, SCHEMA_VERSION
from stream.store.tables import SESSION_TABLES
from stream.store.writer import SqlWriter, check_retention
from stream.text import one_line


class SqliteWriter(SqlWriter):
    """The detector's side: writes are batched in one transaction until `commit()` (called every loop)."""

    queries = WriteQueries(SQLITE)

    def __init__(self, path: str | Path, retention_days: float | None = 30) -> None:
        check_retention(retention_days)
        self.path = Path(path)
        self.retention_days = retention_days
        self._lock = threading.RLock()
        self._own_sessions: list[str] = []
        self._conn: sqlite3.Connection | None = None
        try:
            make_private_folder(self.path.parent)
            create_private_file(self.path)  # 0600 before SQLite opens it: its -wal and -shm files take its mode
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as error:
            # make_private_folder raises FileExistsError only when a parent exists as something else.
            reason = f"{self.path.parent} is not a directory" if isinstance(error, FileExistsError) else error
            raise StoreError(
                f"cannot open the score store at {self.path}: {one_line(reason)}; pass --db with a writable path"
            ) from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the score store at {self.path} has schema version {version}, newer than this program's "
                    f"{SCHEMA_VERSION}; upgrade deepfake-stream or pass --db with another path"
                )
            migrate = MIGRATIONS.get(version, "")
            conn.executescript(f"BEGIN IMMEDIATE;{migrate}{SCHEMA_SQL}PRAGMA user_version={SCHEMA_VERSION};COMMIT;")
        except sqlite3.Error as error:
            conn.close()
            raise StoreError(
                f"cannot open the score store at {self.path}: {one_line(error)}; pass --db with a writable path"
            ) from None
        except StoreError:
            conn.close()
            raise
        self._conn = conn

    @contextlib.contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """The connection inside the open batch (begun on first write), with SQLite errors made one line."""
        with self._lock:
            if self._conn is None:
                raise StoreError(f"the score store writer for {self.path} is closed")
            try:
                if not self._conn.in_transaction:
                    # IMMEDIATE takes the write lock up front, so a second writer waits instead of deadlocking.
                    self._conn.execute("BEGIN IMMEDIATE")
                yield self._conn
            except sqlite3.Error as error:
                raise StoreError(f"score store at {self.path}: {action} failed: {one_line(error)}") from None

    def _execute(self, action: str, *statements: Statement) -> None:
        with self._write(action) as conn:
            for statement in statements:
                conn.execute(*statement)

    def start_session(
        self, info: SessionInfo, config: Mapping[str, Any] | None = None, started_at: float | None = None
    ) -> str:
        """A new session for this run; `config` (the run's resolved settings) is kept beside it. Old sessions go
        first, under `store.retention_days`."""
        started_at = time.time() if started_at is None else started_at
        session_id = new_session_id(started_at)
        removed: dict[str, int] = {}  # rows the retention delete removed, per table
        cutoff = 0.0 if self.retention_days is None else time.time() - self.retention_days * 86400
        with self._write("start session") as conn:
            if self.retention_days is not None:
                old = [row[0] for row in conn.execute(*self.queries.old_sessions(cutoff))]
                for table in SESSION_TABLES if old else ():
                    removed[table.name] = conn.execute(*self.queries.delete_sessions(table.name, old)).rowcount
            conn.execute(*self.queries.insert_session(session_id, started_at, info))
            if config is not None:
                conn.execute(*self.queries.session_config(session_id, config))
            self._own_sessions.append(session_id)
        self.commit()
        if removed.get("sessions"):
            self._log_retention(self.path, removed, cutoff)
        return session_id

    def write_scores(self, scores: Sequence[WindowScore]) -> None:
        if not scores:
            return
        with self._write("write scores") as conn:
            conn.executemany(self.queries.insert_scores, SQLITE.bulk_params(self.queries.score_rows(scores)))

    def write_alert(self, session_id: str, alert: Alert) -> int:
        """The alert's id; re-sending the same alert returns the id it already has."""
        with self._write("write alert") as conn:
            rows = conn.execute(*self.queries.insert_alert(session_id, alert)).fetchall()
            if not rows:
                rows = conn.execute(*self.queries.alert_id(session_id, alert)).fetchall()
        return int(rows[0][0])

    def commit(self) -> None:
        """Make the batch durable and visible to readers; a killed process loses only what came after."""
        with self._lock:
            if self._conn is None or not self._conn.in_transaction:
                return
            with self._write("commit") as conn:
                conn.execute(*self.queries.touch_sessions(time.time(), self._own_sessions))
                conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if self._conn is None:
                return
            try:
                self.commit()
            finally:
                self._conn.close()
                self._conn = None
