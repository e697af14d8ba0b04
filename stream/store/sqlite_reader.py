"""The score store in SQLite, the dashboard's side: a read-only connection that never blocks the detector's writer."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from stream.store.dialect import SQLITE
from stream.store.reader import Build, SqlReader
from stream.store.records import StoreError
from stream.store.schema import BUSY_TIMEOUT_S, SCHEMA_VERSION
from stream.text import one_line


class SqliteReader(SqlReader):
    """The dashboard's side: a read-only connection; WAL lets it read while the detector writes."""

    dialect = SQLITE

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise StoreError(f"no score store at {self.path} yet: start the detector with `python run_stream.py demo`")
        self._lock = threading.Lock()
        self._version = 0
        try:
            # mode=ro: the dashboard cannot write even by mistake. Streamlit may call from several threads.
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro",
                uri=True,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
            self._conn.execute("PRAGMA user_version").fetchone()
        except sqlite3.Error as error:
            raise StoreError(f"cannot read the score store at {self.path}: {one_line(error)}") from None

    def _rows(self, build: Build) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._conn is None:
                raise StoreError(f"the score store reader for {self.path} is closed")
            try:
                if self._version < SCHEMA_VERSION:
                    # Until the writer has made (or migrated) the schema, read what is there: nothing before it.
                    self._version = self._conn.execute("PRAGMA user_version").fetchone()[0]
                statement = self._statement(build, self._version) if self._version else None
                return [] if statement is None else self._conn.execute(*statement).fetchall()
            except sqlite3.Error as error:
                raise StoreError(f"cannot read the score store at {self.path}: {one_line(error)}") from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
