"""Session ids: unique, and ordered by start time as text, so a session's rows can be placed by its id alone
(PostgreSQL partitions the scores table by the day in the id: all of a session's scores are in one partition)."""

from __future__ import annotations

import calendar
import secrets
import time


def new_session_id(started_at: float) -> str:
    """`20240131T235959123Z-1a2b3c`: the start time (UTC, ms) then 6 random hex digits."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(started_at))
    return f"{stamp}{int(started_at % 1 * 1000):03d}Z-{secrets.token_hex(3)}"


def session_day(session_id: str) -> str | None:
    """The UTC day a session started, `YYYYMMDD`, read from its id; None for an id not made by `new_session_id`."""
    day = session_id[:8]
    try:
        time.strptime(day, "%Y%m%d")
    except ValueError:
        return None
    return day if day.isdigit() else None


def next_day(day: str) -> str:
    """The day after `day` (`YYYYMMDD`): the exclusive upper bound of its partition."""
    return time.strftime("%Y%m%d", time.gmtime(calendar.timegm(time.strptime(day, "%Y%m%d")) + 86400))
