"""The score store: writer and reader Protocols, their records, and two backends behind them: SQLite (a path, the
embedded default) and PostgreSQL (a `postgresql://` URL, for several detectors writing to one database).

Everything outside this package imports from here (the dashboard imports nothing else from the project).
"""

from __future__ import annotations

from pathlib import Path

from model.labels import UNCALIBRATED_WARNING
from stream.scores import Alert, Verdict, VerdictState, WindowScore, band_verdict
from stream.store.base import ScoreReader, ScoreWriter
from stream.store.location import PostgresUrl, StoreTarget, local_path, parse_store_target
from stream.store.records import (
    AlertRow,
    AnnotatedFrame,
    ClusterCamera,
    FaceRow,
    FaceSummary,
    FaceUpdate,
    FrameRow,
    HealthRow,
    ScoreRow,
    SessionInfo,
    SessionRow,
    StoreError,
    StreamInfo,
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
    "UNCALIBRATED_WARNING",
    "Alert",
    "AlertRow",
    "AnnotatedFrame",
    "ClusterCamera",
    "FaceReport",
    "FaceRow",
    "FaceSummary",
    "FaceUpdate",
    "FrameRow",
    "HealthRow",
    "PostgresUrl",
    "Report",
    "ScoreReader",
    "ScoreRow",
    "ScoreWriter",
    "SessionInfo",
    "SessionRow",
    "SqliteReader",
    "SqliteWriter",
    "StoreError",
    "StoreTarget",
    "StreamInfo",
    "StreamReport",
    "StreamRow",
    "Verdict",
    "VerdictRow",
    "VerdictState",
    "WindowScore",
    "band_verdict",
    "build_report",
    "local_path",
    "open_reader",
    "open_writer",
    "overall_verdict",
    "parse_store_target",
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
