"""Every statement the score store runs, written once over the tables of tables.py and rendered for a dialect.

Each method gives a statement and its parameters. The texts are made when the object is, once per dialect (and per
schema version for the reader), so a call costs no string building beyond an optional filter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from operator import attrgetter
from typing import Any

from stream.records import (
    Alert,
    AnnotatedFrame,
    ClusterCamera,
    FaceUpdate,
    StreamHealth,
    StreamInfo,
    Verdict,
    VerdictState,
    WindowScore,
)
from stream.store.dialect import Dialect
from stream.store.records import SessionInfo
from stream.store.rows import (
    ALERT_COLUMNS,
    CAMERA_COLUMNS,
    FACE_COLUMNS,
    FRAME_COLUMNS,
    HEALTH_COLUMNS,
    SCORE_COLUMNS,
    SESSION_COLUMNS,
    STREAM_COLUMNS,
    VERDICT_COLUMNS,
)
from stream.store.tables import (
    ALERTS,
    CLUSTER_STATUS,
    FACES,
    FRAMES,
    HEALTH,
    SCORES,
    SESSION_CONFIG,
    SESSIONS,
    STREAMS,
    VERDICTS,
    Table,
    ident,
)

Statement = tuple[str, Sequence[Any]]

_score_values = attrgetter(*SCORE_COLUMNS)
_HEALTH_FIELDS = tuple(f.name for f in fields(StreamHealth))
_health_values = attrgetter(*_HEALTH_FIELDS)
_FACE_FIELDS = tuple(f.name for f in fields(FaceUpdate))
_face_values = attrgetter(*_FACE_FIELDS)
_FACE_VERDICT = _FACE_FIELDS.index("verdict")
_INFO_FIELDS = tuple(f.name for f in fields(SessionInfo))
_CAMERA_FIELDS = tuple(f.name for f in fields(ClusterCamera))
_camera_values = attrgetter(*_CAMERA_FIELDS)
_STREAM_FIELDS = tuple(f.name for f in fields(StreamInfo))
_stream_values = attrgetter(*_STREAM_FIELDS)
_FRAME_FIELDS = tuple(f.name for f in fields(AnnotatedFrame))
_frame_values = attrgetter(*_FRAME_FIELDS)
_SETTABLE = frozenset({"service_url", "last_active", "ended_at"})  # what `set_session` may set


def _insert(dialect: Dialect, table: Table, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table.name} ({', '.join(map(ident, columns))}) VALUES ({dialect.marks(len(columns))})"


def _upsert(dialect: Dialect, table: Table, columns: Sequence[str], keep: Mapping[str, str] | None = None) -> str:
    """Insert, or update the row with the same key: each column to the new value unless `keep` says otherwise."""
    keep = keep or {}
    updates = ", ".join(f"{ident(c)} = {keep.get(c, f'excluded.{ident(c)}')}" for c in columns if c not in table.key)
    return f"{_insert(dialect, table, columns)} ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET {updates}"


class WriteQueries:
    """The writers' statements for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = d = dialect
        m = d.mark
        self.insert_scores = d.bulk_insert(
            SCORES.name, [ident(c) for c in SCORE_COLUMNS], [SCORES.column(c).kind for c in SCORE_COLUMNS]
        )
        self._session = _insert(d, SESSIONS, ("session_id", "started_at", "last_active", *_INFO_FIELDS))
        self._config = _insert(d, SESSION_CONFIG, SESSION_CONFIG.names)
        self._set = {c: f"UPDATE sessions SET {c} = {m} WHERE session_id = {m}" for c in _SETTABLE}
        self._touch = f"UPDATE sessions SET last_active = {m} WHERE {d.in_list('session_id')}"
        self._old = f"SELECT session_id FROM sessions WHERE COALESCE(ended_at, last_active) < {m}"
        self._stream = _upsert(d, STREAMS, ("session_id", *_STREAM_FIELDS))
        self._face = _upsert(
            d,
            FACES,
            ("session_id", *_FACE_FIELDS),
            keep={  # its first sight and first thumbnail stay
                "first_seen": f"{d.least}(faces.first_seen, excluded.first_seen)",
                "first_t_media": "COALESCE(faces.first_t_media, excluded.first_t_media)",
                "last_t_media": "COALESCE(excluded.last_t_media, faces.last_t_media)",
                "thumbnail_jpeg": "COALESCE(faces.thumbnail_jpeg, excluded.thumbnail_jpeg)",
            },
        )
        self._verdict = f"{_insert(d, VERDICTS, VERDICTS.names)} ON CONFLICT DO NOTHING"
        self._face_verdict = (
            f"UPDATE faces SET verdict = {m}, verdict_since = {m}, rolling_p_fake = {m} "
            f"WHERE session_id = {m} AND stream_id = {m} AND track_id = {m}"
        )
        self._alert = f"{_insert(d, ALERTS, (*ALERTS.unique, 'p_fake', 'clip_path', 't_media'))} "
        self._alert += "ON CONFLICT DO NOTHING RETURNING alert_id"
        self._alert_id = "SELECT alert_id FROM alerts WHERE " + " AND ".join(f"{c} = {m}" for c in ALERTS.unique)
        self._alert_clip = f"UPDATE alerts SET clip_path = {m} WHERE alert_id = {m}"
        self._health = _upsert(d, HEALTH, ("session_id", *_HEALTH_FIELDS, "t"))
        self._frame = _upsert(d, FRAMES, ("session_id", *_FRAME_FIELDS))
        self._other_cameras = f"DELETE FROM cluster_status WHERE cluster_id = {m} AND NOT ({d.in_list('camera')})"
        self._camera = _upsert(d, CLUSTER_STATUS, _CAMERA_FIELDS)

    def insert_session(self, session_id: str, started_at: float, info: SessionInfo) -> Statement:
        values = asdict(info)
        values["sources"] = json.dumps(list(info.sources))
        values["calibrated"] = int(info.calibrated)
        return self._session, (session_id, started_at, started_at, *(values[f] for f in _INFO_FIELDS))

    def session_config(self, session_id: str, config: Mapping[str, Any]) -> Statement:
        return self._config, (session_id, json.dumps(config))

    def set_session(self, session_id: str, column: str, value: Any) -> Statement:
        return self._set[column], (value, session_id)

    def touch_sessions(self, t: float, session_ids: Sequence[str]) -> Statement:
        """The sessions' last_active is `t` (every commit)."""
        return self._touch, (t, self.dialect.list_param(session_ids))

    def old_sessions(self, cutoff: float) -> Statement:
        """Sessions that ended (or were last active) before `cutoff`: what retention deletes."""
        return self._old, (cutoff,)

    def delete_sessions(self, table: str, session_ids: Sequence[str]) -> Statement:
        sql = f"DELETE FROM {table} WHERE {self.dialect.in_list('session_id')}"
        return sql, (self.dialect.list_param(session_ids),)

    def upsert_stream(self, session_id: str, stream: StreamInfo) -> Statement:
        return self._stream, (session_id, *_stream_values(stream))

    def score_rows(self, scores: Sequence[WindowScore]) -> list[tuple[Any, ...]]:
        """Rows for `insert_scores` (through `dialect.bulk_params`)."""
        return [_score_values(s) for s in scores]

    def upsert_face(self, session_id: str, face: FaceUpdate) -> Statement:
        values = list(_face_values(face))
        values[_FACE_VERDICT] = VerdictState(face.verdict).value
        return self._face, (session_id, *values)

    def verdict(self, session_id: str, verdict: Verdict) -> tuple[Statement, Statement]:
        """A row in the verdict history, and the face's current verdict (if its face row is there)."""
        state = VerdictState(verdict.state).value
        key = (session_id, verdict.stream_id, verdict.track_id)
        return (
            (self._verdict, (*key, verdict.since, state, verdict.rolling_p_fake)),
            (self._face_verdict, (state, verdict.since, verdict.rolling_p_fake, *key)),
        )

    def insert_alert(self, session_id: str, alert: Alert) -> Statement:
        """Returns the new alert's id; no row when the alert was there already (then: `alert_id`)."""
        return self._alert, (*self._alert_key(session_id, alert), alert.p_fake, alert.clip_path, alert.t_media)

    def alert_id(self, session_id: str, alert: Alert) -> Statement:
        return self._alert_id, self._alert_key(session_id, alert)

    @staticmethod
    def _alert_key(session_id: str, alert: Alert) -> tuple[Any, ...]:
        return (session_id, alert.stream_id, alert.track_id, alert.kind, alert.t)

    def set_alert_clip(self, alert_id: int, clip_path: str) -> Statement:
        return self._alert_clip, (clip_path, alert_id)

    def upsert_health(self, session_id: str, health: StreamHealth, t: float) -> Statement:
        return self._health, (session_id, *_health_values(health), t)

    def upsert_frame(self, session_id: str, frame: AnnotatedFrame) -> Statement:
        return self._frame, (session_id, *_frame_values(frame))

    def cluster_status(self, cluster_id: str, cameras: Sequence[ClusterCamera]) -> list[Statement]:
        """The cluster's rows become `cameras`: those of cameras no longer listed go."""
        other = (self._other_cameras, (cluster_id, self.dialect.list_param(c.camera for c in cameras)))
        return [other, *((self._camera, _camera_values(c)) for c in cameras)]


class ReadQueries:
    """The readers' statements for one dialect and the store's schema version: a column the store lacks (written
    before its version, never migrated when only read) is selected as its default."""

    def __init__(self, dialect: Dialect, version: int) -> None:
        self.version = version
        m = self.mark = dialect.mark
        self._sessions = (
            f"SELECT {self._select(SESSIONS, SESSION_COLUMNS)} FROM sessions ORDER BY started_at DESC, session_id DESC"
        )
        self._config = f"SELECT config FROM session_config WHERE session_id = {m}"
        streams = (
            f"SELECT {self._select(STREAMS, STREAM_COLUMNS, 's.')}, {self._select(HEALTH, HEALTH_COLUMNS, 'h.')} "
            "FROM streams s LEFT JOIN health h ON h.session_id = s.session_id AND h.stream_id = s.stream_id WHERE "
        )
        self._streams = f"{streams}s.session_id = {m} ORDER BY s.stream_id"
        self._streams_of_kind = (  # newest session first
            f"{streams}s.kind = {m} ORDER BY (SELECT started_at FROM sessions WHERE session_id = s.session_id) DESC, "
            "s.session_id DESC, s.stream_id"
        )
        self._faces = f"SELECT {self._select(FACES, FACE_COLUMNS)} FROM faces WHERE session_id = {m}"
        self._scores = (
            f"SELECT {self._select(SCORES, SCORE_COLUMNS)} FROM scores "
            f"WHERE session_id = {m} AND stream_id = {m} AND track_id = {m}"
        )
        self._verdicts = f"SELECT {self._select(VERDICTS, VERDICT_COLUMNS)} FROM verdicts WHERE session_id = {m}"
        self._alerts = f"SELECT {self._select(ALERTS, ALERT_COLUMNS)} FROM alerts WHERE session_id = {m}"
        self._frame = (
            f"SELECT {self._select(FRAMES, FRAME_COLUMNS)} FROM frames WHERE session_id = {m} AND stream_id = {m}"
        )
        # Per face: the media-time span it was seen (else its scores' span), scores stored, final verdict, mean and
        # max p_fake, crops encoded and skipped (NULL, unknown, in a store older than their columns).
        self._summaries = (
            "SELECT f.stream_id, f.track_id, f.first_seen, f.last_seen, COALESCE(f.first_t_media, s.t0), "
            "COALESCE(f.last_t_media, s.t1), COALESCE(s.n, 0), f.verdict, s.mean_p, s.max_p, "
            f"{self._select(FACES, ('crops', 'crops_skipped'), 'f.', 'NULL')} FROM faces f "
            "LEFT JOIN (SELECT stream_id, track_id, MIN(t_media) AS t0, MAX(t_media) AS t1, COUNT(*) AS n, "
            f"AVG(p_fake) AS mean_p, MAX(p_fake) AS max_p FROM scores WHERE session_id = {m} "
            "GROUP BY stream_id, track_id) s ON s.stream_id = f.stream_id AND s.track_id = f.track_id "
            f"WHERE f.session_id = {m} ORDER BY f.stream_id, f.track_id"
        )
        self._cameras = f"SELECT {self._select(CLUSTER_STATUS, CAMERA_COLUMNS)} FROM cluster_status WHERE cluster_id = "

    def _select(self, table: Table, names: Sequence[str], prefix: str = "", fallback: str | None = None) -> str:
        """The columns, each added after this store's version as a stand-in: `fallback`, else the column's default,
        else NULL."""
        columns = []
        for name in names:
            column = table.column(name)
            if column.since <= self.version:
                columns.append(f"{prefix}{ident(name)}")
            else:
                columns.append(f"{fallback or column.default or 'NULL'} AS {ident(name)}")
        return ", ".join(columns)

    def sessions(self) -> Statement:
        return self._sessions, ()

    def session_config(self, session_id: str) -> Statement:
        return self._config, (session_id,)

    def streams(self, session_id: str) -> Statement:
        return self._streams, (session_id,)

    def streams_of_kind(self, kind: str) -> Statement:
        return self._streams_of_kind, (kind,)

    def faces(self, session_id: str, stream_id: str | None) -> Statement:
        sql, params = self._filtered(self._faces, [session_id], stream_id=stream_id)
        return f"{sql} ORDER BY stream_id, track_id", params

    def scores(
        self, session_id: str, stream_id: str, track_id: int, since_t: float | None, limit: int | None
    ) -> Statement:
        """In frame order; captured at or after `since_t`; the newest `limit`."""
        sql, params = self._scores, [session_id, stream_id, track_id]
        if since_t is not None:
            sql, params = f"{sql} AND t_capture >= {self.mark}", [*params, since_t]
        if limit is None:
            return f"{sql} ORDER BY frame_index", params
        newest = f"{sql} ORDER BY frame_index DESC LIMIT {self.mark}"
        return f"SELECT * FROM ({newest}) s ORDER BY frame_index", [*params, limit]

    def verdicts(self, session_id: str, stream_id: str | None, track_id: int | None) -> Statement:
        """Oldest first."""
        sql, params = self._filtered(self._verdicts, [session_id], stream_id=stream_id, track_id=track_id)
        return f"{sql} ORDER BY since, stream_id, track_id", params

    def alerts(self, session_id: str, stream_id: str | None) -> Statement:
        """Newest first."""
        sql, params = self._filtered(self._alerts, [session_id], stream_id=stream_id)
        return f"{sql} ORDER BY t DESC, alert_id DESC", params

    def latest_frame(self, session_id: str, stream_id: str) -> Statement:
        return self._frame, (session_id, stream_id)

    def face_summaries(self, session_id: str) -> Statement:
        return self._summaries, (session_id, session_id)

    def cluster_status(self, cluster_id: str | None) -> Statement | None:
        """By camera: the newest cluster's unless `cluster_id` names one; None before the table's version."""
        if self.version < CLUSTER_STATUS.since:
            return None
        if cluster_id is None:
            return f"{self._cameras}(SELECT MAX(cluster_id) FROM cluster_status) ORDER BY camera", ()
        return f"{self._cameras}{self.mark} ORDER BY camera", (cluster_id,)

    def _filtered(self, sql: str, params: list[Any], **equal: Any) -> tuple[str, list[Any]]:
        """`sql` (ending in a WHERE clause) narrowed to the columns in `equal` that are not None."""
        for column, value in equal.items():
            if value is not None:
                sql, params = f"{sql} AND {column} = {self.mark}", [*params, value]
        return sql, params
