"""The score store: writer and reader Protocols, their records, and the SQLite implementation.

Everything outside this package imports from here (the dashboard imports nothing else from the project).
"""

from __future__ import annotations

from pathlib import Path

from model.labels import UNCALIBRATED_WARNING
from stream.scores import Alert, Verdict, VerdictState, WindowScore, band_verdict
from stream.store.base import ScoreReader, ScoreWriter
from stream.store.records import (
    AlertRow,
    AnnotatedFrame,
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
    "FaceReport",
    "FaceRow",
    "FaceSummary",
    "FaceUpdate",
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
    "StreamInfo",
    "StreamReport",
    "StreamRow",
    "Verdict",
    "VerdictRow",
    "VerdictState",
    "WindowScore",
    "band_verdict",
    "build_report",
    "open_reader",
    "open_writer",
    "overall_verdict",
]


def open_writer(path: str | Path, retention_days: float | None = 30) -> ScoreWriter:
    """The store's writer for a database path (SQLite, the embedded default)."""
    return SqliteWriter(path, retention_days=retention_days)


def open_reader(path: str | Path) -> ScoreReader:
    """A read-only view of the store at a database path."""
    return SqliteReader(path)
