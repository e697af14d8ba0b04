"""The service's caps: the 429 answer (with `Retry-After` and the config key that was hit), a limit on requests served
at once, and the bounded pool that opens API-added sources (never asyncio's default one, which the store reads share).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from stream.capture.references import SourceError
from stream.capture.sources import Source
from stream.detector import Detector
from stream.records import StreamState
from stream.service.schemas import ApiError
from stream.text import one_line

log = logging.getLogger("deepfake_stream")

RUNNING = (StreamState.STARTING, StreamState.LIVE, StreamState.RECONNECTING)


def over_cap(key: str, limit: int, what: str, retry_after_s: int) -> ApiError:
    """A 429 naming the cap (`service.KEY`) that was hit, with `Retry-After`."""
    line = f"{what} (service.{key} = {limit}): try again in {retry_after_s} s"
    return ApiError(429, line, {"Retry-After": str(retry_after_s)})


class ConnectionLimit:
    """ASGI middleware: at most `limit` HTTP requests served at once; the next get 429 at once (`service.
    max_connections`). A slow upload holds its slot until it is cut off (`service.upload_min_kbps`)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/healthz":
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            refused = over_cap("max_connections", self.limit, "too many requests at once", 1)
            body = json.dumps({"detail": str(refused)}).encode()
            headers = [(b"content-type", b"application/json"), (b"retry-after", b"1")]
            await send({"type": "http.response.start", "status": 429, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        self.active += 1  # one event loop: no lock needed
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


@dataclass(frozen=True)
class Failed:
    """A source the API could not open (or that was stopped while it opened: `ended`), listed with its reason until
    `service.ended_keep_s` has passed."""

    source: Source
    reason: str | None
    at: float
    state: StreamState = StreamState.FAILED


class Openings:
    """Sources added through the API being opened, each on a worker of a pool of `limit` (an RTSP camera may take
    its whole `sources.open_timeout_s` to answer): more at once → 429. Thread-safe."""

    def __init__(
        self,
        start: Callable[[Source], Future[None]],
        limit: int,
        keep_s: float,
        explain: Callable[[Source, SourceError], str] = lambda _, error: str(error),
    ) -> None:
        self._start = start  # Detector.start_source: opens (blocking) and hands the source to the loop
        self._explain = explain  # the reason listed for a source that could not be opened (a file's says nothing)
        self.limit = limit
        self._keep_s = keep_s
        self._pool = ThreadPoolExecutor(limit, thread_name_prefix="open-source")
        self._lock = threading.Lock()
        self._opening: dict[str, Source] = {}
        self._failed: dict[str, Failed] = {}
        self._cancelled: set[str] = set()  # stopped while opening: never run

    def open(self, source: Source) -> None:
        """Start opening a prepared source; 429 when `limit` are being opened already."""
        with self._lock:
            if len(self._opening) >= self.limit:
                raise over_cap("max_opening", self.limit, "too many sources are being opened", 5)
            self._opening[source.stream_id] = source
            self._failed.pop(source.stream_id, None)
            self._cancelled.discard(source.stream_id)
        self._pool.submit(self._open, source)

    def open_at_once(self, source: Source) -> Future[Future[None]]:
        """Open a prepared source on the pool for a caller that waits for it (a local file opens at once): its
        SourceError goes to the caller, and it is never listed as opening or failed."""
        return self._pool.submit(self._start, source)

    def opening(self) -> dict[str, Source]:
        with self._lock:
            return {sid: source for sid, source in self._opening.items() if sid not in self._cancelled}

    def cancel(self, stream_id: str) -> bool:
        """Stop a source being opened: listed `ended` at once; once open, it ends as soon as the loop takes it (its
        worker is busy until the open returns). False when it is not being opened."""
        with self._lock:
            source = self._opening.get(stream_id)
            if source is None or stream_id in self._cancelled:
                return False
            self._cancelled.add(stream_id)
            self._failed[stream_id] = Failed(source, None, time.monotonic(), StreamState.ENDED)
        source.stop()
        return True

    def failed(self) -> dict[str, Failed]:
        """The sources that could not be opened lately (older ones forgotten)."""
        cutoff = time.monotonic() - self._keep_s
        with self._lock:
            self._failed = {sid: f for sid, f in self._failed.items() if f.at >= cutoff}
            return dict(self._failed)

    def close(self) -> None:
        """No new opens; those under way finish on their own (each within its open timeout)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _open(self, source: Source) -> None:
        try:
            added = self._start(source)
        except SourceError as error:
            self._fail(source, self._explain(source, error))
        except Exception as error:  # anything else a source raised: listed as its reason, never a dead worker
            log.error("opening %s failed: %s", source.stream_id, one_line(error, limit=200))
            self._fail(source, f"could not be opened: {one_line(error, limit=200)}")
        else:
            added.add_done_callback(lambda done: self._refused(source, done))
        finally:
            with self._lock:
                self._opening.pop(source.stream_id, None)

    def _refused(self, source: Source, added: Future[None]) -> None:
        if added.cancelled() or added.exception() is None:
            return
        error = added.exception()
        if isinstance(error, ValueError):
            self._fail(source, f"stream {source.stream_id!r} is already running: stop it first, or choose another name")
        else:
            self._fail(source, f"the detector did not take it: {one_line(error, limit=200)}")

    def _fail(self, source: Source, reason: str) -> None:
        with self._lock:
            if source.stream_id in self._cancelled:
                return  # stopped while opening: it stays `ended`
            self._failed[source.stream_id] = Failed(source, reason, time.monotonic())


def running_kinds(detector: Detector) -> dict[str, str]:
    """The detector's running streams (by the loop's snapshot, and those opened but not taken yet) and their kinds."""
    sources = {source.stream_id: source for source in list(detector.sources)}
    health = {h.stream_id: h.state for h in detector.health()}
    running = {sid for sid, state in health.items() if state in RUNNING}
    waiting = {
        sid for sid, s in sources.items() if sid not in health and s.state in RUNNING and not (s.stopping or s.finished)
    }
    return {sid: sources[sid].spec.kind if sid in sources else "unknown" for sid in running | waiting}
