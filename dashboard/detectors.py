"""Which detector the dashboard's controls talk to: a session in the store that recorded its service's URL, has not
ended, and whose service answers now (newest first); or, when there is none, why, in one line for the page.

A detector serving with no streams writes nothing to the store, so "the session wrote recently" cannot tell a live
service from a dead one: the service's `GET /healthz` does (it needs no token).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dashboard import data
from dashboard.control import Control
from stream.config.store_location import StoreTarget
from stream.store import ScoreReader, SessionRow

MAX_PROBES = 8  # services asked per page run at most (each answers at once, or within PROBE_TIMEOUT_S)


@dataclass(frozen=True)
class Detector:
    """A running detector's session and where its service listens."""

    session: SessionRow
    url: str


@dataclass(frozen=True)
class Target:
    """What the control pages send commands to: the chosen detector and its client, or why there is none."""

    detector: Detector | None
    control: Control | None
    reason: str | None


@dataclass(frozen=True)
class Detectors:
    running: tuple[Detector, ...]  # newest first; empty when none answers
    reason: str | None  # why there is none (None when there is one)


def start_hint(db: StoreTarget) -> str:
    """A command to paste: the store quoted, so a PostgreSQL URL's `&` or a path's spaces survive the shell."""
    return f"`python run_stream.py --serve 0 --db {shlex.quote(str(db))}` (with or without a SOURCE)"


def find_detectors(reader: ScoreReader | None, db: Path, alive: Callable[[str], bool]) -> Detectors:
    """The running detectors with a service over this store, newest first (`alive(url)` asks a service if it is
    there); where there is none, the reason."""
    if reader is None:
        return Detectors(
            (), f"No score store at `{db}` yet, so no detector to send commands to: start one with {start_hint(db)}."
        )
    sessions = reader.sessions()
    if not sessions:
        return Detectors((), f"No detector has run on `{db}` yet: start one with {start_hint(db)}.")
    seen: set[str] = set()
    candidates: list[Detector] = []
    for session in sessions:  # newest first; a URL a newer session took over is that session's
        url = session.service_url
        if not url or url in seen:
            continue
        seen.add(url)
        if session.ended_at is None and len(candidates) < MAX_PROBES:
            candidates.append(Detector(session, url))
    running = tuple(c for c in candidates if alive(c.url))
    if running:
        return Detectors(running, None)
    return Detectors((), _why_none(sessions, candidates, db))


def _why_none(sessions: list[SessionRow], silent: list[Detector], db: Path) -> str:
    hint = f"Start one with {start_hint(db)}."
    if silent:
        newest = silent[0]
        started = data.wall_time(newest.session.started_at, with_date=True)
        return (
            f"No detector service is running: the run started {started} recorded its service at {newest.url}, which "
            f"does not answer (the detector has stopped without ending its run). {hint}"
        )
    latest = sessions[0]
    status = data.session_status(latest, time.time())
    if latest.service_url and status.state == "ended":
        return f"No detector service is running: the newest run (it served at {latest.service_url}) has ended. {hint}"
    if status.state == "running":
        return (
            f"The running detector was started without `--serve`: it takes no commands (browsing its run works). {hint}"
        )
    return f"No detector service is running (the newest run has {status.state}). {hint}"


def label(detector: Detector) -> str:
    """How the detector picker names one: when it started, its sources, where it serves."""
    session = detector.session
    sources = ", ".join(session.sources) or "no sources"
    if len(sources) > 40:
        sources = sources[:37] + "..."
    return f"{data.wall_time(session.started_at, with_date=True)} · {sources} · {detector.url}"
