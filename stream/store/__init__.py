"""The score store: writer and reader Protocols, their records, and two backends behind them: SQLite (a path, the
embedded default) and PostgreSQL (a `postgresql://` URL, for several detectors writing to one database).

Everything outside this package imports the store from here; the records it stores are the bottom layer's
(`stream.records`), and where it is comes from the light config (`stream.config.store_location`).
"""

from __future__ import annotations

from pathlib import Path

from stream.config.store_location import PostgresUrl, StoreTarget, parse_store_target
from stream.store.base import ScoreReader, ScoreWriter
from stream.store.records import (
    AlertRow,
    FaceRow,
    FrameRow,
    HealthRow,
    ScoreRow,
    SessionInfo,
    SessionRow,
    StoreError,
    StreamRow,
    VerdictRow,
)
from stream.store.report import REPORT_SCHEMA, FaceReport, Report, StreamReport, build_report, overall_verdict
from stream.store.schema import SCHEMA_SQL, SCHEMA_VERSION
from stream.store.sqlite import SqliteWriter
from stream.store.sqlite_reader import SqliteReader

__all__ = [
    "REPORT_SCHEMA",
    "SCHEMA_SQL",
    "SCHEMA_VERSION",
    "AlertRow",
    "FaceReport",
    "FaceRow",
    "FrameRow",
    "HealthRow",
    "Report",
    "ScoreReader",
    "ScoreRow",
    "ScoreWriter",
    "SessionInfo",
    "SessionRow",
    "SqliteReader",
    "SqliteWriter",
    "StoreError",
    "StreamReport",
    "StreamRow",
    "VerdictRow",
    "build_report",
    "open_reader",
    "open_writer",
    "overall_verdict",
]


def _target(path: str | Path | PostgresUrl) -> StoreTarget:
    """A string is read as a URL before it is read as a path (`postgresql://…` never becomes a SQLite file)."""
    try:
        return parse_store_target(path)
    except ValueError as error:
        raise StoreError(str(error)) from None


def open_writer(path: str | Path | PostgresUrl, retention_days: float | None = 30) -> ScoreWriter:
    """The store's writer: SQLite for a path, PostgreSQL for a `postgresql://` URL."""
    target = _target(path)
    if isinstance(target, PostgresUrl):
        from stream.store.postgres import PostgresWriter

        return PostgresWriter(target, retention_days=retention_days)
    return SqliteWriter(target, retention_days=retention_days)


def open_reader(path: str | Path | PostgresUrl) -> ScoreReader:
    """A read-only view of the store: SQLite for a path, PostgreSQL for a `postgresql://` URL."""
    target = _target(path)
    if isinstance(target, PostgresUrl):
        from stream.store.postgres_reader import PostgresReader

        return PostgresReader(target)
    return SqliteReader(target)
