"""Graceful overload (DESIGN.md, "Identity and overload"): what the loop does when it cannot encode every live
face's crop of every frame in real time.

Each iteration of the loop is a round: the newest frame of every stream, its faces found and tracked, their crops
encoded in one batch. When the encoder is the bottleneck the rounds grow longer than a frame and each live
camera's frames are thinned evenly by the rounds themselves (the frames in between are not processed), every face
of a frame still in one batch: an engine's cost per crop falls with the batch (on a 2-core CPU, ~10 ms a crop at
batch 4 against 16-25 at batch 1), so fewer frames with all their faces score more than every frame with a face or
two. A round may not last longer than `1 / pipeline.min_track_fps`, so detection and tracking keep running on
enough frames of every camera to hold every id: the encoder gets what the round's other work leaves of that (or a
fixed `pipeline.encode_budget_ms`), and when not every live crop fits, those that fit are chosen round-robin across
every face of every stream: the faces with the fewest crops encoded first (each face joins at the current floor),
then those that waited longest. The others are skipped for this frame: a skipped crop never enters its face's
ring, so a window stays the last T crops scored for that face. While the encoder is contended no face gets `LEAD`
crops ahead of the face furthest behind, even when the crops of this round would fit: otherwise a camera whose
frames come when the encoder happens to be free would take more than its share.

A live frame the loop did not process counts as thinned while the rounds kept its camera at or above the tracking
rate, and as dropped past that (one frame for each tracking period missed).

Files replayed as fast as possible are never thinned or skipped: they wait. A file paced as a live stream
(`sources.realtime`) counts as live.

An upload (a file sent to the service) is scored with the time the live cameras leave free: while any live stream
runs, an upload's frames are taken only in an iteration of their own, started when no live frame waits and only
when it ends early enough that the live frame arriving meanwhile is still processed before the one after it
(`background_fits`, over the median of recent iteration times), and besides whenever its part of the loop's time is
below `pipeline.upload_share` (stream/loop/upload_share.py): an upload slows under load, and the cameras are thinned
for its share, but it always finishes. With no live stream it runs at full speed.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence

from stream.config import LoopSettings
from stream.loop.upload_share import UploadShare

LEAD = 2  # while contended, a face is at most this many crops ahead of the face furthest behind ...
CONTENTION_S = 1.0  # ... the encoder counts as contended this long after it last skipped a live crop ...
ACTIVE_S = 0.5  # ... and the face furthest behind is among those seen this recently (a face missed for longer, or
# new, joins at that floor instead of claiming a burst of crops)
STALE_FRAMES = 5  # a live camera with no frame for this many of its intervals (and at least STALE_S: reconnecting,
STALE_S = 1.0  # stalled) does not hold uploads back
SAMPLES = 9  # iteration times are the median of this many recent ones ...
PROBE_S = 5.0  # ... and an upload that has not run for this long is timed again (it may have become cheaper)


def crops_that_fit(budget_s: float | None, seconds_for: Callable[[int], float | None], most: int) -> int | None:
    """How many of `most` crops one encode fits in `budget_s` (0 when it is spent already); None when nothing limits
    them: no live crop, or no encode timed yet."""
    if budget_s is None or seconds_for(1) is None:
        return None
    fit = 0
    while fit < most and (seconds := seconds_for(fit + 1)) is not None and seconds <= budget_s:
        fit += 1
    return fit


def round_robin(shares: Sequence[int], turns: Sequence[int], fit: int | None, floor: int, contended: bool) -> list[int]:
    """Which of this round's live crops to encode: positions, in the order they were chosen.

    `shares`: each face's crops encoded in the round-robin count (`Face.share`); `turns`: its place in the queue,
    lower waited longer (`Face.turn`); `fit`: crops that fit in the budget (None: no limit); `floor`: the lowest
    share among the faces seen recently. Every crop when all fit and the encoder is not contended; else the
    faces with the lowest share first, then those that waited longest, at least one crop when any may go, and never
    a face `LEAD` or more ahead of the floor."""
    count = len(shares)
    if fit is None or (fit >= count and not contended):
        return list(range(count))
    allowed = sorted((i for i in range(count) if shares[i] < floor + LEAD), key=lambda i: (shares[i], turns[i]))
    return allowed if fit >= count else allowed[: max(1, fit)]


def thinned_of(not_processed: int, span_s: float, min_track_fps: float) -> int:
    """Of the `not_processed` frames between two processed frames of a live camera `span_s` apart, those thinned:
    all of them while the span kept the tracking rate; past it, one frame per tracking period missed was dropped."""
    missed = max(0, round(span_s * min_track_fps) - 1)
    return max(0, not_processed - missed)


def background_fits(
    now: float, background_s: float | None, live_s: float | None, cameras: Sequence[tuple[float, float]]
) -> bool:
    """Whether an iteration of upload frames alone may start `now` (wall-clock seconds) beside live cameras.

    `background_s`: what such an iteration lately took; `live_s`: what an iteration with live frames lately took;
    `cameras`: each live camera's last processed frame's capture time and its frame interval. It may when the frame
    each camera delivers during it can still be processed before that camera's next one arrives, and no camera is
    already busier than its frame rate allows. An iteration not timed yet (None) fits (that one times it)."""
    for last, interval in cameras:
        if now - last > max(STALE_S, STALE_FRAMES * interval):
            continue
        if live_s is not None and live_s >= interval:  # the loop is behind this camera already: it gets all the time
            return False
        if background_s is None or live_s is None:
            continue
        due = last + interval * (math.floor((now - last) / interval) + 1)  # its next frame
        if now + background_s + live_s > due + interval:
            return False
    return True


class BackgroundGate:
    """What iterations with live frames, and iterations of upload frames alone, lately took (the median of the last
    `SAMPLES`, robust to a slow one), and from that whether uploads may run now (`background_fits`); and the uploads'
    guaranteed share of the loop (stream/loop/upload_share.py), which gives them an iteration of their own even when
    they do not fit."""

    def __init__(self, upload_share: float = LoopSettings.upload_share) -> None:
        self._live: deque[float] = deque(maxlen=SAMPLES)
        self._background: deque[float] = deque(maxlen=SAMPLES)
        self._background_at = -math.inf  # monotonic: the last upload iteration
        self.share = UploadShare(upload_share)

    def owed(self) -> bool:
        """The uploads are owed this iteration for their share of the loop (their next frames, on their own)."""
        return self.share.owed()

    def background_s_since(self, since: float | None) -> float:
        """Seconds the loop spent on upload iterations since monotonic `since` (a live stream's previous frame)."""
        return 0.0 if since is None else self.share.background_s_since(since)

    def took(self, live: bool, seconds: float) -> None:
        """An iteration ended: with live frames (`live`), or of upload frames alone."""
        self.share.took(live, seconds)
        if live:
            self._live.append(seconds)
        else:
            self._background.append(seconds)
            self._background_at = time.monotonic()

    def may_run(self, now: float, cameras: Sequence[tuple[float, float]]) -> bool:
        """`background_fits` with these times; an upload not run for `PROBE_S` counts as not yet measured."""
        live = statistics.median(self._live) if self._live else None
        fresh = self._background and time.monotonic() - self._background_at < PROBE_S
        return background_fits(now, statistics.median(self._background) if fresh else None, live, cameras)


class OverloadMeter:
    """How overloaded a live stream is lately: the larger of the share of its frames thinned and the share of its face
    crops skipped, over the last `window_s` (`pipeline.overload_window_s`). A few thinned frames in a minute, or a
    burst long past, stay under the share that makes an "overloaded" banner (`pipeline.overload_share`)."""

    def __init__(self, window_s: float = 10.0, now: float | None = None) -> None:
        self.window_s = window_s
        # (monotonic time, totals so far): frames processed, thinned, crops encoded, skipped; a few per window.
        self._samples: deque[tuple[float, tuple[int, int, int, int]]] = deque(
            [(time.monotonic() if now is None else now, (0, 0, 0, 0))]
        )

    def share(self, now: float, frames: int, thinned: int, encoded: int, skipped: int) -> float:
        """The share since the newest sample at least `window_s` old (the stream's start, when it is younger); `now`
        and the totals so far are kept as a sample."""
        totals = (frames, thinned, encoded, skipped)
        if now - self._samples[-1][0] >= self.window_s / 20:
            self._samples.append((now, totals))
        while len(self._samples) > 1 and self._samples[1][0] <= now - self.window_s:
            self._samples.popleft()
        frames, thinned, encoded, skipped = (a - b for a, b in zip(totals, self._samples[0][1], strict=True))
        return max(thinned / (frames + thinned) if thinned else 0.0, skipped / (encoded + skipped) if skipped else 0.0)
