"""The dashboard's side of the store over SQL, once for both backends: each read is one statement of queries.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Self

from stream.records import ClusterCamera, FaceSummary
from stream.store.dialect import Dialect
from stream.store.queries import ReadQueries, Statement
from stream.store.records import AlertRow, FaceRow, FrameRow, ScoreRow, SessionRow, StreamRow, VerdictRow
from stream.store.rows import face_row, face_summary, session_row, stream_row, verdict_row

# Builds a statement from the queries for the store's schema version; None: nothing to read there.
Build = Callable[[ReadQueries], Statement | None]


class SqlReader:
    """`ScoreReader` for a backend that says how to run a statement (`_rows`, which learns the store's schema version
    and reads nothing before the schema exists). Reads only, and never blocks the writer."""

    dialect: Dialect
    _queries: ReadQueries | None = None

    def _rows(self, build: Build) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _statement(self, build: Build, version: int) -> Statement | None:
        """`build`'s statement for a store at schema `version` (the queries are made once per version)."""
        queries = self._queries
        if queries is None or queries.version != version:
            queries = self._queries = ReadQueries(self.dialect, version)
        return build(queries)

    def sessions(self) -> list[SessionRow]:
        return [session_row(r) for r in self._rows(lambda q: q.sessions())]

    def latest_session(self) -> SessionRow | None:
        sessions = self.sessions()
        return sessions[0] if sessions else None

    def session_config(self, session_id: str) -> dict[str, Any] | None:
        """The resolved settings the session ran with (None for sessions written before they were kept)."""
        rows = self._rows(lambda q: q.session_config(session_id))
        return json.loads(rows[0][0]) if rows else None

    def streams(self, session_id: str) -> list[StreamRow]:
        return [stream_row(r) for r in self._rows(lambda q: q.streams(session_id))]

    def streams_of_kind(self, kind: str) -> list[StreamRow]:
        """The streams of one kind (e.g. `upload`) in every session, newest session first."""
        return [stream_row(r) for r in self._rows(lambda q: q.streams_of_kind(kind))]

    def faces(self, session_id: str, stream_id: str | None = None) -> list[FaceRow]:
        return [face_row(r) for r in self._rows(lambda q: q.faces(session_id, stream_id))]

    def scores(
        self,
        session_id: str,
        stream_id: str,
        track_id: int,
        since_t: float | None = None,
        limit: int | None = None,
    ) -> list[ScoreRow]:
        """Scores of one face in frame order; `since_t` keeps those captured at or after it, `limit` the newest."""
        rows = self._rows(lambda q: q.scores(session_id, stream_id, track_id, since_t, limit))
        return [ScoreRow(*r) for r in rows]

    def verdicts(self, session_id: str, stream_id: str | None = None, track_id: int | None = None) -> list[VerdictRow]:
        """Verdict changes, oldest first."""
        return [verdict_row(r) for r in self._rows(lambda q: q.verdicts(session_id, stream_id, track_id))]

    def alerts(self, session_id: str, stream_id: str | None = None) -> list[AlertRow]:
        return [AlertRow(*r) for r in self._rows(lambda q: q.alerts(session_id, stream_id))]

    def latest_frame(self, session_id: str, stream_id: str) -> FrameRow | None:
        rows = self._rows(lambda q: q.latest_frame(session_id, stream_id))
        return FrameRow(*rows[0]) if rows else None

    def face_summaries(self, session_id: str) -> list[FaceSummary]:
        """Per face: media-time span it was seen (falling back to its scores' span), scores stored, final verdict,
        mean and max p_fake over its scores, crops encoded and skipped (None in stores older than schema 2 and 3)."""
        return [face_summary(r) for r in self._rows(lambda q: q.face_summaries(session_id))]

    def cluster_status(self, cluster_id: str | None = None) -> list[ClusterCamera]:
        """Where each camera of a cluster of detectors runs, by camera: the newest cluster's unless `cluster_id` names
        one; none in a store no cluster wrote to (or older than schema 5)."""
        return [ClusterCamera(*r) for r in self._rows(lambda q: q.cluster_status(cluster_id))]

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
