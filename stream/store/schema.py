"""The score store's SQLite schema: its tables, its version and the migrations from older versions."""

from __future__ import annotations

SCHEMA_VERSION = 5  # 2: faces.crops, health.frames_read; 3: faces.crops_skipped, health.frames_thinned,
# health.crops_encoded, health.crops_skipped; 4: sessions.service_url; 5: the cluster_status table
BUSY_TIMEOUT_S = 10.0

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY, started_at REAL NOT NULL, ended_at REAL, last_active REAL NOT NULL,
    checkpoint TEXT NOT NULL, calibrated INTEGER NOT NULL, window INTEGER NOT NULL, stride INTEGER NOT NULL,
    window_mode TEXT NOT NULL, threshold REAL NOT NULL, hysteresis REAL NOT NULL, device TEXT NOT NULL,
    engine TEXT NOT NULL, sources TEXT NOT NULL, service_url TEXT);
CREATE TABLE IF NOT EXISTS streams (
    session_id TEXT NOT NULL, stream_id TEXT NOT NULL, source TEXT NOT NULL, kind TEXT NOT NULL,
    PRIMARY KEY (session_id, stream_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS health (
    session_id TEXT NOT NULL, stream_id TEXT NOT NULL, state TEXT NOT NULL, fps_in REAL NOT NULL,
    fps_scored REAL NOT NULL, frames_dropped INTEGER NOT NULL, reconnects INTEGER NOT NULL, last_error TEXT,
    t REAL NOT NULL, frames_read INTEGER NOT NULL DEFAULT 0, frames_thinned INTEGER NOT NULL DEFAULT 0,
    crops_encoded INTEGER NOT NULL DEFAULT 0, crops_skipped INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, stream_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS faces (
    session_id TEXT NOT NULL, stream_id TEXT NOT NULL, track_id INTEGER NOT NULL, first_seen REAL NOT NULL,
    last_seen REAL NOT NULL, first_t_media REAL, last_t_media REAL, state TEXT NOT NULL, verdict TEXT NOT NULL,
    verdict_since REAL, rolling_p_fake REAL, frames_scored INTEGER NOT NULL, thumbnail_jpeg BLOB,
    crops INTEGER NOT NULL DEFAULT 0, crops_skipped INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, stream_id, track_id));
CREATE TABLE IF NOT EXISTS scores (
    session_id TEXT NOT NULL, stream_id TEXT NOT NULL, track_id INTEGER NOT NULL, frame_index INTEGER NOT NULL,
    t_media REAL, window INTEGER NOT NULL, p_fake REAL NOT NULL, t_capture REAL NOT NULL, t_scored REAL NOT NULL,
    PRIMARY KEY (session_id, stream_id, track_id, frame_index)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS verdicts (
    session_id TEXT NOT NULL, stream_id TEXT NOT NULL, track_id INTEGER NOT NULL, since REAL NOT NULL,
    state TEXT NOT NULL, rolling_p_fake REAL NOT NULL,
    PRIMARY KEY (session_id, stream_id, track_id, since)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerts (
    alert_id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, stream_id TEXT NOT NULL,
    track_id INTEGER NOT NULL, kind TEXT NOT NULL, t REAL NOT NULL, p_fake REAL NOT NULL, clip_path TEXT,
    t_media REAL, UNIQUE (session_id, stream_id, track_id, kind, t));
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts (session_id, t);
CREATE TABLE IF NOT EXISTS session_config (session_id TEXT PRIMARY KEY, config TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS frames (
    session_id TEXT NOT NULL, stream_id TEXT NOT NULL, t REAL NOT NULL, jpeg BLOB NOT NULL,
    PRIMARY KEY (session_id, stream_id));
CREATE TABLE IF NOT EXISTS cluster_status (
    cluster_id TEXT NOT NULL, camera TEXT NOT NULL, source TEXT NOT NULL, actor TEXT, node TEXT, session_id TEXT,
    state TEXT NOT NULL, since REAL NOT NULL, t REAL NOT NULL, detail TEXT,
    PRIMARY KEY (cluster_id, camera)) WITHOUT ROWID;
"""
# Older stores get the columns later versions added (the tables keep their rows): each version every later step.
# Version 5 only added a table, which SCHEMA_SQL's CREATE TABLE IF NOT EXISTS makes in any older store.
MIGRATE_FROM_3 = """
ALTER TABLE sessions ADD COLUMN service_url TEXT;
"""
MIGRATE_FROM_2 = (
    """
ALTER TABLE faces ADD COLUMN crops_skipped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE health ADD COLUMN frames_thinned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE health ADD COLUMN crops_encoded INTEGER NOT NULL DEFAULT 0;
ALTER TABLE health ADD COLUMN crops_skipped INTEGER NOT NULL DEFAULT 0;
"""
    + MIGRATE_FROM_3
)
MIGRATE_FROM_1 = (
    """
ALTER TABLE faces ADD COLUMN crops INTEGER NOT NULL DEFAULT 0;
ALTER TABLE health ADD COLUMN frames_read INTEGER NOT NULL DEFAULT 0;
"""
    + MIGRATE_FROM_2
)
MIGRATIONS = {1: MIGRATE_FROM_1, 2: MIGRATE_FROM_2, 3: MIGRATE_FROM_3}
