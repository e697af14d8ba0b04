"""The score store in PostgreSQL, the dashboard's side: the same read API as `SqliteReader`, over a small pool of
autocommit connections (each query its own snapshot: readers never block writers, nor writers readers)."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from stream.config.store_location import PostgresUrl
from stream.store.dialect import POSTGRES
from stream.store.postgres import CONNECT_TIMEOUT_S, connect, newer_schema_error, stored_version
from stream.store.reader import Build, SqlReader
from stream.store.records import StoreError
from stream.store.schema import SCHEMA_VERSION
from stream.text import one_line


class PostgresReader(SqlReader):
    """The dashboard's side: reads only. An empty database (no detector has written yet) reads as no sessions."""

    dialect = POSTGRES

    def __init__(self, url: PostgresUrl, pool_size: int = 4) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._version = 0
        connect(url, "read").close()  # one clear line now if the server, database or role is wrong
        self._pool: ConnectionPool | None = ConnectionPool(
            url.url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            open=False,
            name="deepfake-store-reader",
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as error:
            self._pool.close()
            raise StoreError(f"cannot read the score store at {url}: {one_line(error)}") from None

    def _rows(self, build: Build) -> list[tuple[Any, ...]]:
        with self._lock:
            pool = self._pool
        if pool is None:
            raise StoreError(f"the score store reader for {self.url} is closed")
        try:
            with pool.connection() as conn:
                version = self._version
                if version < SCHEMA_VERSION:
                    # Until a writer has made (or migrated) the schema, read what is there: nothing before it.
                    version = stored_version(conn)
                    if version > SCHEMA_VERSION:
                        raise newer_schema_error(self.url, version)
                    self._version = version
                statement = self._statement(build, version) if version else None
                return [] if statement is None else conn.execute(*statement).fetchall()
        except psycopg.Error as error:
            raise StoreError(f"cannot read the score store at {self.url}: {one_line(error)}") from None

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
