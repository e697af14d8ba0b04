"""An upload's guaranteed share of the loop: live cameras keep priority, but beside them a running upload still gets
at least `pipeline.upload_share` of the loop's time, so it always finishes.

The loop's time is what its iterations took (finding and tracking faces, encoding and scoring them; idle time is
nobody's), counted over the last `WINDOW_S` seconds as iterations with live frames and iterations of upload frames
alone. While the uploads' part of it is below the share, the next iteration takes the uploads' next frames instead
of the live ones (those wait in their buffers, which keep the newest); otherwise an upload runs only in the time the
cameras leave free (`overload.background_fits`). So an upload beside a loop the cameras keep busy runs at about the
share of its speed alone, its iterations spread between the live ones, and one beside idle cameras at full speed.
The window starts afresh once no upload has waited for `IDLE_S`: live time from before an upload owes it no burst.

A live frame the loop left out while upload iterations ran counts as thinned, never as dropped, and not toward the
"overloaded" banner: a camera slowed for an upload's share is not overloaded (`yielded_of`).
"""

from __future__ import annotations

import math
import time
from collections import deque

WINDOW_S = 2.0  # the share is measured over the loop's iterations of this many seconds ...
IDLE_S = 1.0  # ... since an upload last began waiting after none had for this long


class UploadShare:
    """What the loop's recent iterations took, live and upload-only, and whether an upload is owed the next one."""

    def __init__(self, share: float, window_s: float = WINDOW_S) -> None:
        if not 0.0 < share < 1.0:
            raise ValueError(f"upload share must be in (0, 1), got {share}")
        self.share = share
        self.window_s = window_s
        self._iterations: deque[tuple[float, float, bool]] = deque()  # (monotonic end, seconds, live), oldest first
        self._waited_at = -math.inf  # monotonic: the last time an upload waited for the loop

    def took(self, live: bool, seconds: float, now: float | None = None) -> None:
        """An iteration ended `now`: with live frames (`live`), or of upload frames alone."""
        now = time.monotonic() if now is None else now
        self._iterations.append((now, seconds, live))
        self._trim(now)

    def measured(self, now: float | None = None) -> float | None:
        """The uploads' part of the loop's time over the window; None while no live iteration is in it."""
        self._trim(time.monotonic() if now is None else now)
        background = sum(seconds for _, seconds, live in self._iterations if not live)
        total = sum(seconds for _, seconds, _ in self._iterations)
        return background / total if total > background else None

    def owed(self, now: float | None = None) -> bool:
        """Whether an upload waiting `now` gets the next iteration: its part of the loop's time is below the share.
        Asked each iteration while an upload waits; the first ask after a pause starts the window afresh."""
        now = time.monotonic() if now is None else now
        if now - self._waited_at > IDLE_S:
            self._iterations.clear()
        self._waited_at = now
        share = self.measured(now)
        return share is not None and share < self.share

    def background_s_since(self, since: float) -> float:
        """Seconds of upload-only iterations that ended after monotonic `since` (within the window)."""
        return sum(seconds for end, seconds, live in self._iterations if not live and end > since)

    def _trim(self, now: float) -> None:
        while self._iterations and self._iterations[0][0] <= now - self.window_s:
            self._iterations.popleft()


def yielded_of(thinned: int, yielded_s: float, interval_s: float | None) -> float:
    """Of `thinned` live frames left out between two processed frames of a camera, those left out for uploads: one per
    frame interval of the `yielded_s` the loop spent on upload iterations in between (a fraction: rounding each gap
    would lose part of a frame every time)."""
    if not thinned or yielded_s <= 0 or not interval_s:
        return 0.0
    return min(float(thinned), yielded_s / interval_s)
